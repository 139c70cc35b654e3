"""A detached run's EC2 Auto Scaling group of one spot instance, and its launch template: create,
describe, delete (boto3 only; what the instance does once booted: spotrain/onboard/supervisor.py).

The launch template holds what one attempt's instance is (image, key, security group, IMDSv2 required,
encrypted gp3 volumes with the data snapshot, the instance profile, the user data, the run's tags), built
from the same `run_params` as an attached launch so the two never drift apart. It asks for no spot
market itself: AWS refuses a template with InstanceMarketOptions in a group with a mixed instances
policy ("Auto Scaling groups with multiple instance types and purchase options", Amazon EC2 Auto Scaling
User Guide); the group's InstancesDistribution makes every instance spot (0% on-demand), chosen
price-capacity-optimized under the max price. The group is min 0, max 1, desired 1, one subnet per
allowed zone, with Capacity Rebalancing on, so AWS starts a replacement on the rebalance
recommendation ("Use Capacity Rebalancing to handle Amazon EC2 Spot Interruptions").

One name for both: `spotrain-RUN`, so a fresh laptop process (status, down) finds them from the run id.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import boto3

from spotrain.cloud import TAG_RUN, Leftover, tags
from spotrain.cloud.aws import ClientError, client, error_code, translated
from spotrain.cloud.aws.instances import LaunchSpec, RegionResources, run_params

GONE = {"ValidationError", "InvalidLaunchTemplateName.NotFoundException", "InvalidLaunchTemplateId.NotFound"}


def group_name(run_id: str) -> str:
    """The group's name and its launch template's: one per run."""
    return f"spotrain-{run_id}"


@dataclass(frozen=True)
class GroupSpec:
    """What a detached run asks AWS to keep alive: one attempt's launch, and the zones it may run in."""

    launch: LaunchSpec
    subnets: dict[str, str]  # allowed zone -> its subnet, in the plan's order


@dataclass(frozen=True)
class GroupState:
    """The group as AWS holds it now."""

    name: str
    region: str
    desired: int
    min_size: int
    max_size: int
    subnets: tuple[str, ...]  # in the order the group lists them
    instances: tuple[tuple[str, str, str], ...]  # (instance id, zone, lifecycle state)
    capacity_rebalance: bool


def template_data(spec: LaunchSpec, res: RegionResources) -> dict[str, Any]:
    """The launch template's data: an attached launch's parameters less what a group decides itself
    (the zone, the count, the market, the client token)."""
    flat = RegionResources(res.region, res.image, res.key_name, res.security_group_id, subnets=None)
    params = run_params(spec, zone="", res=flat)
    data: dict[str, Any] = {
        "ImageId": params["ImageId"],
        "InstanceType": params["InstanceType"],
        "KeyName": params["KeyName"],
        "SecurityGroupIds": params["SecurityGroupIds"],
        "MetadataOptions": params["MetadataOptions"],
        "BlockDeviceMappings": params["BlockDeviceMappings"],
        "TagSpecifications": [
            s for s in params["TagSpecifications"] if s["ResourceType"] != "spot-instances-request"
        ],
    }
    if "IamInstanceProfile" in params:
        data["IamInstanceProfile"] = params["IamInstanceProfile"]
    if "UserData" in params:
        data["UserData"] = base64.b64encode(params["UserData"].encode()).decode()
    return data


def group_params(spec: GroupSpec, template_id: str) -> dict[str, Any]:
    """The create_auto_scaling_group arguments: 100% spot through a mixed instances policy."""
    distribution: dict[str, Any] = {
        "OnDemandBaseCapacity": 0,
        "OnDemandPercentageAboveBaseCapacity": 0,
        "SpotAllocationStrategy": "price-capacity-optimized",
    }
    if spec.launch.max_price is not None:
        distribution["SpotMaxPrice"] = f"{spec.launch.max_price:.5f}"
    name = group_name(spec.launch.run_id)
    return {
        "AutoScalingGroupName": name,
        "MixedInstancesPolicy": {
            "LaunchTemplate": {
                "LaunchTemplateSpecification": {"LaunchTemplateId": template_id, "Version": "$Latest"},
                "Overrides": [{"InstanceType": spec.launch.instance_type}],
            },
            "InstancesDistribution": distribution,
        },
        "MinSize": 0,
        "MaxSize": 1,
        "DesiredCapacity": 1,
        "VPCZoneIdentifier": ",".join(spec.subnets.values()),
        "CapacityRebalance": True,
        "Tags": [
            {**t, "ResourceId": name, "ResourceType": "auto-scaling-group", "PropagateAtLaunch": False}
            for t in tags(run_id=spec.launch.run_id, owner=spec.launch.owner)
        ],
    }


@translated("create the run's Auto Scaling group")
def create_group(sess: boto3.Session, spec: GroupSpec, res: RegionResources) -> GroupState:
    """The launch template, then the group that keeps one instance of it alive."""
    name = group_name(spec.launch.run_id)
    ec2 = client(sess, "ec2", res.region)
    made = ec2.create_launch_template(
        LaunchTemplateName=name,
        LaunchTemplateData=template_data(spec.launch, res),
        TagSpecifications=[
            {
                "ResourceType": "launch-template",
                "Tags": tags(run_id=spec.launch.run_id, owner=spec.launch.owner),
            }
        ],
    )
    template_id = made["LaunchTemplate"]["LaunchTemplateId"]
    client(sess, "autoscaling", res.region).create_auto_scaling_group(**group_params(spec, template_id))
    state = describe_group(sess, res.region, spec.launch.run_id)
    assert state is not None, "a group just created is described"
    return state


@translated("describe the run's Auto Scaling group")
def describe_group(sess: boto3.Session, region: str, run_id: str) -> GroupState | None:
    """The run's group now, or None when it has none (never made, or deleted by `down`)."""
    asg = client(sess, "autoscaling", region)
    found = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[group_name(run_id)])["AutoScalingGroups"]
    if not found:
        return None
    g = found[0]
    return GroupState(
        name=g["AutoScalingGroupName"],
        region=region,
        desired=g["DesiredCapacity"],
        min_size=g["MinSize"],
        max_size=g["MaxSize"],
        subnets=tuple(s for s in g.get("VPCZoneIdentifier", "").split(",") if s),
        instances=tuple(
            (i["InstanceId"], i["AvailabilityZone"], i["LifecycleState"]) for i in g.get("Instances", [])
        ),
        capacity_rebalance=bool(g.get("CapacityRebalance")),
    )


@translated("list the runs' Auto Scaling groups")
def find_groups(sess: boto3.Session, *, regions: Sequence[str], run_id: str | None = None) -> list[Leftover]:
    """The groups and launch templates tagged for `run_id` (every run's when None), as leftovers."""
    found: list[Leftover] = []
    for region in regions:
        asg = client(sess, "autoscaling", region)
        for page in asg.get_paginator("describe_auto_scaling_groups").paginate():
            for g in page["AutoScalingGroups"]:
                run = next((t["Value"] for t in g.get("Tags", []) if t["Key"] == TAG_RUN), None)
                if run is not None and run_id in (None, run):
                    found.append(Leftover("auto-scaling-group", region, g["AutoScalingGroupName"], run))
        flt = [
            {"Name": f"tag:{TAG_RUN}", "Values": [run_id]}
            if run_id
            else {"Name": "tag-key", "Values": [TAG_RUN]}
        ]
        for t in client(sess, "ec2", region).describe_launch_templates(Filters=flt)["LaunchTemplates"]:
            run = next((x["Value"] for x in t.get("Tags", []) if x["Key"] == TAG_RUN), "")
            found.append(Leftover("launch-template", region, t["LaunchTemplateName"], run))
    return found


@translated("delete the run's Auto Scaling group")
def delete_groups(sess: boto3.Session, leftovers: Sequence[Leftover]) -> list[str]:
    """Each group force-deleted (AWS terminates its instances: "Delete your Auto Scaling
    infrastructure"), then each launch template; one already gone counts as deleted."""
    deleted: list[str] = []
    for kind in ("auto-scaling-group", "launch-template"):
        for lo in (x for x in leftovers if x.kind == kind):
            try:
                if kind == "auto-scaling-group":
                    client(sess, "autoscaling", lo.region).delete_auto_scaling_group(
                        AutoScalingGroupName=lo.resource_id, ForceDelete=True
                    )
                else:
                    client(sess, "ec2", lo.region).delete_launch_template(LaunchTemplateName=lo.resource_id)
            except ClientError as err:
                if error_code(err) not in GONE:
                    raise
            deleted.append(lo.resource_id)
    return deleted
