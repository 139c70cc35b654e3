"""The IAM requests of a detached run's calls (Auto Scaling groups and EC2 launch templates), for
policy_check.py, as AWS's Service Authorization Reference lists them: a group's ARN is
`arn:aws:autoscaling:REGION:ACCOUNT:autoScalingGroup:*:autoScalingGroupName/NAME`; creating a group
with tags also asks `autoscaling:CreateOrUpdateTags`; creating one from a launch template asks
`ec2:RunInstances` on that template and `iam:PassRole` of its instance profile's role ("Launch
template permissions", Amazon EC2 Auto Scaling User Guide). Tags are read from moto's backends at the
moment of the call."""

from __future__ import annotations

from typing import Any

ACCOUNT = "123456789012"
TEMPLATE_OPS = {"DeleteLaunchTemplate", "CreateLaunchTemplate"}
GROUP_OPS = {
    "DeleteAutoScalingGroup",
    "SetDesiredCapacity",
    "UpdateAutoScalingGroup",
    "CreateAutoScalingGroup",
}


def group_arn(region: str, name: str) -> str:
    return f"arn:aws:autoscaling:{region}:{ACCOUNT}:autoScalingGroup:*:autoScalingGroupName/{name}"


def moto_tags(service: str, region: str, operation: str, params: dict[str, Any]) -> dict[str, dict[str, str]]:
    """The tags of the group or the launch template a call names, as moto holds them now."""
    if service == "autoscaling" and operation == "TerminateInstanceInAutoScalingGroup":
        from moto.autoscaling.models import autoscaling_backends

        backend = autoscaling_backends[ACCOUNT][region]
        name = next(
            (g.name for g in backend.autoscaling_groups.values()
             if any(s.instance.id == params["InstanceId"] for s in g.instance_states)),
            "(none)",
        )  # fmt: skip
        group = backend.autoscaling_groups.get(name)
        return {"group": {"name": name}, name: {t["Key"]: t["Value"] for t in group.tags} if group else {}}
    if service == "autoscaling" and operation in GROUP_OPS:
        from moto.autoscaling.models import autoscaling_backends

        name = params["AutoScalingGroupName"]
        group = autoscaling_backends[ACCOUNT][region].autoscaling_groups.get(name)
        template = (params.get("MixedInstancesPolicy") or {}).get("LaunchTemplate", {})
        out = {name: {t["Key"]: t["Value"] for t in group.tags}} if group else {}
        tid = template.get("LaunchTemplateSpecification", {}).get("LaunchTemplateId")
        return out | (_template_tags(region, tid) if tid else {})
    if service == "ec2" and operation == "DeleteLaunchTemplate":
        from moto.ec2.models import ec2_backends

        tid = ec2_backends[ACCOUNT][region].launch_template_name_to_ids.get(params.get("LaunchTemplateName"))
        return _template_tags(region, tid) if tid else {}
    return {}


def _template_tags(region: str, template_id: str) -> dict[str, dict[str, str]]:
    from moto.ec2.models import ec2_backends

    backend = ec2_backends[ACCOUNT][region]
    tags = dict(backend.tags.get(template_id, {}))
    found = backend.launch_templates.get(template_id)
    profile = found.latest_version().data.get("IamInstanceProfile") if found else None
    return {template_id: tags} | ({"profile": profile} if profile else {})


def _tags_of(call: Any, rid: str) -> dict[str, list[str]]:
    return {f"aws:ResourceTag/{k}": [v] for k, v in call.tags.get(rid, {}).items()}


def autoscaling_requests(call: Any, pass_role: Any) -> list[Any]:
    """The requests of one Auto Scaling call; `pass_role(profile)` is policy_check's."""
    from .policy_check import Request

    p, r, action = call.params, call.region, f"autoscaling:{call.operation}"
    if call.operation == "TerminateInstanceInAutoScalingGroup":  # authorized on the instance's group
        name = call.tags["group"]["name"]
        return [Request(action, group_arn(r, name), _tags_of(call, name))]
    if call.operation not in GROUP_OPS:
        return [Request(action, "*")]
    name = p["AutoScalingGroupName"]
    if call.operation != "CreateAutoScalingGroup":
        return [Request(action, group_arn(r, name), _tags_of(call, name))]
    asked = {f"aws:RequestTag/{t['Key']}": [t["Value"]] for t in p.get("Tags", [])}
    out = [Request(action, group_arn(r, name), asked)]
    if asked:
        out.append(Request("autoscaling:CreateOrUpdateTags", group_arn(r, name), asked))
    spec = p["MixedInstancesPolicy"]["LaunchTemplate"]["LaunchTemplateSpecification"]
    tid = spec["LaunchTemplateId"]
    out.append(
        Request("ec2:RunInstances", f"arn:aws:ec2:{r}:{ACCOUNT}:launch-template/{tid}", _tags_of(call, tid))
    )
    if "profile" in call.tags:
        out.append(pass_role(call.tags["profile"]))
    return out


def launch_template_requests(call: Any) -> list[Any]:
    """CreateLaunchTemplate (with its tags, and CreateTags while creating) and DeleteLaunchTemplate."""
    from .policy_check import Request

    p, r = call.params, call.region
    arn = f"arn:aws:ec2:{r}:{ACCOUNT}:launch-template/*"
    if call.operation == "CreateLaunchTemplate":
        asked: dict[str, list[str]] = {}
        for spec in p.get("TagSpecifications", []):
            if spec["ResourceType"] == "launch-template":
                asked.update({f"aws:RequestTag/{t['Key']}": [t["Value"]] for t in spec["Tags"]})
        out = [Request("ec2:CreateLaunchTemplate", arn, asked)]
        return out + (
            [Request("ec2:CreateTags", arn, {"ec2:CreateAction": [call.operation]})] if asked else []
        )
    tid = next(iter(call.tags), "*")
    return [Request("ec2:DeleteLaunchTemplate", arn.replace("/*", f"/{tid}"), _tags_of(call, tid))]
