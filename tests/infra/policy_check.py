"""Record every boto3 call the controller and the trainer make, and check each against infra/'s policies.

    with record_operations() as rec:     # botocore event hooks on every client made meanwhile
        ...any flow, in this process, on moto (mock_aws or the dry-run's server)...
    check_policies(rec)          # raises AssertionError listing each denied call; returns a report

Who made a call is decided when its client is created: a client built from code under spotrain/ is
the controller's, one built under trainer/ the trainer's (so s3transfer's worker threads count for the
client's owner), anything else (the test's own clients) is not checked. Each call becomes one or more
IAM authorization requests (action, resource ARN, condition keys), as AWS's Service Authorization
Reference describes them; resource tags are read from moto's backend at the moment of the call.
The evaluator knows Allow/Deny, Action/Resource wildcards and the condition operators the policies use.
"""

from __future__ import annotations

import functools
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import botocore.session

from .policies import REPO, controller_policy, instance_role_policy, load_template  # noqa: F401
from .policy_autoscaling import autoscaling_requests, launch_template_requests, moto_tags

ACCOUNT = "123456789012"  # moto's default account
VENV = REPO / ".venv"
# The detached run's supervisor runs on the instance, with the instance role, like the trainer.
OWNERS = {
    REPO / "spotrain" / "onboard": "trainer",
    REPO / "spotrain": "controller",
    REPO / "trainer": "trainer",
}
FAKES = REPO / "spotrain" / "cloud" / "local" / "moto_patches.py"
FREE = {"sts:GetCallerIdentity"}  # AWS asks no permission for these
S3_ACTIONS = {
    "ListObjectsV2": "ListBucket",
    "ListObjects": "ListBucket",
    "HeadBucket": "ListBucket",
    "HeadObject": "GetObject",
    "CreateMultipartUpload": "PutObject",
    "UploadPart": "PutObject",
    "CompleteMultipartUpload": "PutObject",
    "ListParts": "ListMultipartUploadParts",
    "DeleteObjects": "DeleteObject",
    "ListObjectVersions": "ListBucketVersions",
}


@dataclass(frozen=True)
class Call:
    owner: str  # "controller" or "trainer"
    service: str  # the IAM prefix: ec2, s3, ssm, servicequotas, ...
    operation: str  # the API operation: RunInstances, ListObjectsV2, ...
    region: str
    params: dict[str, Any]
    tags: dict[str, dict[str, str]] = field(default_factory=dict)  # resource id -> its tags then


@dataclass(frozen=True)
class Request:
    action: str
    resource: str  # "*" for actions without resource-level permissions
    context: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Recorder:
    calls: list[Call] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    active: bool = True

    def of(self, owner: str) -> list[Call]:
        return [c for c in self.calls if c.owner == owner]


# -- recording --------------------------------------------------------------------------------


def _owner_of_caller() -> str | None:
    """The owner of the innermost repository frame that is creating a client. The dry-run's own fakes
    own nothing: a client made directly in spotrain/cloud/local/ (its seeding), or made anywhere
    while spotrain/cloud/local/moto_patches.py is on the stack (the infra deploy as an administrator, the
    re-registration of a restarted dry-run's instances). The tests' own clients own nothing either."""
    frame = sys._getframe(2)  # skip this function and `creating`
    owner: str | None = None
    innermost = True
    while frame is not None:
        path = Path(frame.f_code.co_filename)
        if path == FAKES:
            return None
        if innermost and path.is_relative_to(REPO) and not path.is_relative_to(VENV):
            innermost = False
            if path.is_relative_to(REPO / "spotrain" / "cloud" / "local"):
                return None
            owner = next((o for root, o in OWNERS.items() if path.is_relative_to(root)), None)
        frame = frame.f_back
    return owner


def _resource_ids(params: dict[str, Any]) -> list[str]:
    ids = list(params.get("InstanceIds", [])) + list(params.get("SpotInstanceRequestIds", []))
    ids += [params[k] for k in ("GroupId", "VolumeId", "KeyName", "GroupName") if k in params]
    ids += [params["Placement"]["GroupName"]] if params.get("Placement", {}).get("GroupName") else []
    return ids + list(params.get("SecurityGroupIds", []))


def _moto_tags(region: str, ids: list[str]) -> dict[str, dict[str, str]]:
    from moto.ec2.models import ec2_backends

    backend = ec2_backends[ACCOUNT][region]
    # A key pair is named in calls but tagged under its id (key-...).
    keys = {i: backend.key_pairs[i].id for i in ids if i in backend.key_pairs}
    found = {i: dict(backend.tags.get(keys.get(i, i), {})) for i in ids}
    # The dry-run's placement groups (moto has none: spotrain/cloud/local/moto_placement.py) keep
    # their own tags, by name.
    for name, group in backend.__dict__.get("spotrain_placement_groups", {}).items():
        if name in ids:
            found[name] = {t["Key"]: t["Value"] for t in group["Tags"]}
    return found


FIS_TEMPLATE_OPS = {"DeleteExperimentTemplate", "GetExperimentTemplate", "UpdateExperimentTemplate"}


def _fis_template_id(operation: str, params: dict[str, Any]) -> str | None:
    return params.get("id") if operation in FIS_TEMPLATE_OPS else params.get("experimentTemplateId")


def _moto_fis_tags(region: str, operation: str, params: dict[str, Any]) -> dict[str, dict[str, str]]:
    """The tags of the experiment template a call names, as FIS holds them then."""
    from moto.fis.models import fis_backends

    template_id = _fis_template_id(operation, params)
    backend = fis_backends[ACCOUNT][region]
    if template_id is None or template_id not in backend.experiment_templates:
        return {}
    arn = backend.experiment_templates[template_id].arn
    return {template_id: backend.list_tags_for_resource(arn)}


@contextmanager
def record_operations() -> Iterator[Recorder]:
    """Record, in this process, every API call made on a client created by spotrain/ or trainer/
    while this is active: each such client gets a hook on botocore's `before-parameter-build` event,
    which every operation emits (paginators, waiters and s3transfer's threads included)."""
    rec = Recorder()
    create_client = botocore.session.Session.create_client

    def hook(owner: str, region: str, params: dict[str, Any], model: Any, **_: Any) -> None:
        if not rec.active:
            return  # a client made while recording, still used after it
        service = model.service_model.signing_name
        ids = _resource_ids(params)
        tags = _moto_tags(region, ids) if service == "ec2" and ids else {}
        if service == "fis":
            tags = _moto_fis_tags(region, model.name, params)
        tags = tags | moto_tags(service, region, model.name, params)
        call = Call(owner, service, model.name, region, dict(params), tags)
        with rec.lock:
            rec.calls.append(call)

    @functools.wraps(create_client)
    def creating(self: Any, *args: Any, **kwargs: Any) -> Any:
        made = create_client(self, *args, **kwargs)
        owner = _owner_of_caller()
        if owner:
            made.meta.events.register(
                "before-parameter-build", functools.partial(hook, owner, made.meta.region_name)
            )
        return made

    try:
        with mock.patch.object(botocore.session.Session, "create_client", creating):
            yield rec
    finally:
        rec.active = False


# -- calls to IAM requests ---------------------------------------------------------------------


def _ec2(region: str, kind: str, rid: str = "*", account: str = ACCOUNT) -> str:
    return f"arn:aws:ec2:{region}:{account}:{kind}/{rid}"


def _request_tags(params: dict[str, Any], kind: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for spec in params.get("TagSpecifications", []):
        if spec["ResourceType"] == kind:
            out.update({f"aws:RequestTag/{t['Key']}": [t["Value"]] for t in spec["Tags"]})
    return out


def _resource_tags(call: Call, rid: str) -> dict[str, list[str]]:
    return {f"aws:ResourceTag/{k}": [v] for k, v in call.tags.get(rid, {}).items()}


def _tagging(call: Call, kinds: list[str]) -> list[Request]:
    tagged = {s["ResourceType"] for s in call.params.get("TagSpecifications", [])}
    ctx = {"ec2:CreateAction": [call.operation]}
    return [Request("ec2:CreateTags", _ec2(call.region, k), ctx) for k in kinds if k in tagged]


def _pass_role(profile: dict[str, str]) -> Request:
    from moto.iam.models import iam_backends

    iam = iam_backends[ACCOUNT]["global"]
    found = (
        iam.get_instance_profile_by_arn(profile["Arn"])
        if "Arn" in profile
        else iam.get_instance_profile(profile["Name"])
    )
    role = found.roles[0].arn if found.roles else f"arn:aws:iam::{ACCOUNT}:role/(none)"
    return Request("iam:PassRole", role, {"iam:PassedToService": ["ec2.amazonaws.com"]})


def _run_instances(call: Call) -> list[Request]:
    p, r = call.params, call.region
    market = p.get("InstanceMarketOptions", {}).get("MarketType", "on-demand")
    out = [
        Request(
            "ec2:RunInstances",
            _ec2(r, "instance"),
            {**_request_tags(p, "instance"), "ec2:InstanceMarketType": [market]},
        ),
        Request("ec2:RunInstances", _ec2(r, "volume"), _request_tags(p, "volume")),
        Request("ec2:RunInstances", f"arn:aws:ec2:{r}::image/{p['ImageId']}"),
        Request("ec2:RunInstances", _ec2(r, "subnet")),
        Request("ec2:RunInstances", _ec2(r, "network-interface")),
    ]
    if market == "spot":
        out.append(
            Request(
                "ec2:RunInstances",
                _ec2(r, "spot-instances-request"),
                _request_tags(p, "spot-instances-request"),
            )
        )
    if "KeyName" in p:
        out.append(Request("ec2:RunInstances", _ec2(r, "key-pair", p["KeyName"])))
    for group in p.get("SecurityGroupIds", []):
        out.append(Request("ec2:RunInstances", _ec2(r, "security-group", group), _resource_tags(call, group)))
    placement = p.get("Placement", {}).get("GroupName")
    if placement:  # RunInstances authorizes the placement group it names (Service Authorization Reference)
        pg = _ec2(r, "placement-group", placement)
        out.append(Request("ec2:RunInstances", pg, _resource_tags(call, placement)))
    for disk in p.get("BlockDeviceMappings", []):
        if disk.get("Ebs", {}).get("SnapshotId"):
            out.append(Request("ec2:RunInstances", f"arn:aws:ec2:{r}::snapshot/{disk['Ebs']['SnapshotId']}"))
    if "IamInstanceProfile" in p:
        out.append(_pass_role(p["IamInstanceProfile"]))
    return out + _tagging(call, ["instance", "volume", "spot-instances-request"])


ON_TAGGED = {  # operation -> (resource kind, parameter holding the ids)
    "TerminateInstances": ("instance", "InstanceIds"),
    "CancelSpotInstanceRequests": ("spot-instances-request", "SpotInstanceRequestIds"),
    "DeleteVolume": ("volume", "VolumeId"),
    "DeleteSecurityGroup": ("security-group", "GroupId"),
    "DeleteKeyPair": ("key-pair", "KeyName"),
    "AuthorizeSecurityGroupIngress": ("security-group", "GroupId"),
    "RevokeSecurityGroupIngress": ("security-group", "GroupId"),
    "DeletePlacementGroup": ("placement-group", "GroupName"),
}


def _ec2_requests(call: Call) -> list[Request]:
    p, r, action = call.params, call.region, f"ec2:{call.operation}"
    if call.operation == "RunInstances":
        return _run_instances(call)
    if call.operation in {"CreateLaunchTemplate", "DeleteLaunchTemplate"}:
        return launch_template_requests(call)
    if call.operation == "CreateSecurityGroup":
        out = [
            Request(action, _ec2(r, "security-group"), _request_tags(p, "security-group")),
            Request(action, _ec2(r, "vpc", p.get("VpcId", "*"))),
        ]
        return out + _tagging(call, ["security-group"])
    if call.operation == "CreatePlacementGroup":
        pg = Request(action, _ec2(r, "placement-group", p["GroupName"]), _request_tags(p, "placement-group"))
        return [pg, *_tagging(call, ["placement-group"])]
    if call.operation == "ImportKeyPair":
        return [Request(action, _ec2(r, "key-pair", p["KeyName"]), _request_tags(p, "key-pair"))] + _tagging(
            call, ["key-pair"]
        )
    if call.operation in ON_TAGGED:
        kind, key = ON_TAGGED[call.operation]
        ids = p[key] if isinstance(p[key], list) else [p[key]]
        return [Request(action, _ec2(r, kind, i), _resource_tags(call, i)) for i in ids]
    return [Request(action, "*")]


def _s3_requests(call: Call) -> list[Request]:
    p = call.params
    action = "s3:" + S3_ACTIONS.get(call.operation, call.operation)
    bucket = f"arn:aws:s3:::{p['Bucket']}"
    if action == "s3:ListBucket":
        ctx = {"s3:prefix": [p["Prefix"]]} if "Prefix" in p else {}
        return [Request(action, bucket, ctx)]
    if call.operation == "DeleteObjects":
        return [Request(action, f"{bucket}/{o['Key']}") for o in p["Delete"]["Objects"]]
    return [Request(action, f"{bucket}/{p['Key']}" if "Key" in p else bucket)]


def _fis_requests(call: Call) -> list[Request]:
    """From the Service Authorization Reference's FIS table: creating a template names the template and
    each action and passes the role to FIS; starting names the template and the new experiment."""
    p, r, action = call.params, call.region, f"fis:{call.operation}"
    arn = f"arn:aws:fis:{r}:{ACCOUNT}"
    tagged = {f"aws:RequestTag/{k}": [v] for k, v in (p.get("tags") or {}).items()}
    if call.operation == "CreateExperimentTemplate":
        out = [Request(action, f"{arn}:experiment-template/*", tagged)]
        out += [Request(action, f"{arn}:action/{a['actionId']}") for a in p["actions"].values()]
        out.append(Request("iam:PassRole", p["roleArn"], {"iam:PassedToService": ["fis.amazonaws.com"]}))
        return out + ([Request("fis:TagResource", f"{arn}:experiment-template/*", tagged)] if tagged else [])
    template = _fis_template_id(call.operation, p)
    if template is not None:
        out = [Request(action, f"{arn}:experiment-template/{template}", _resource_tags(call, template))]
        if call.operation == "StartExperiment":
            out.append(Request(action, f"{arn}:experiment/*", tagged))
            out += [Request("fis:TagResource", f"{arn}:experiment/*", tagged)] if tagged else []
        return out
    if "id" in p:
        return [Request(action, f"{arn}:experiment/{p['id']}")]
    return [Request(action, "*")]


def requests(call: Call) -> list[Request]:
    """The IAM authorization requests AWS makes for one API call."""
    action = f"{call.service}:{call.operation}"
    if action in FREE:
        return []
    if call.service == "ec2":
        return _ec2_requests(call)
    if call.service == "s3":
        return _s3_requests(call)
    if call.service == "fis":
        return _fis_requests(call)
    if call.service == "autoscaling":
        return autoscaling_requests(call, _pass_role)
    if call.service == "ssm" and call.operation in {"GetParameters", "GetParameter"}:
        names = call.params.get("Names") or [call.params["Name"]]
        return [Request(action, f"arn:aws:ssm:{call.region}::parameter{n}") for n in names]
    if call.service == "servicequotas":
        p = call.params
        return [
            Request(
                action, f"arn:aws:servicequotas:{call.region}:{ACCOUNT}:{p['ServiceCode']}/{p['QuotaCode']}"
            )
        ]
    if call.service == "cloudformation" and "StackName" in call.params:
        name = call.params["StackName"]
        arn = (
            name
            if name.startswith("arn:")
            else f"arn:aws:cloudformation:{call.region}:{ACCOUNT}:stack/{name}/*"
        )
        return [Request(action, arn)]
    return [Request(action, "*")]


# -- evaluation -------------------------------------------------------------------------------


def _glob(pattern: str, value: str, *, case: bool = True) -> bool:
    rx = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(rx, value, 0 if case else re.IGNORECASE) is not None


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _condition(op: str, key: str, wanted: Any, context: dict[str, list[str]]) -> bool:
    have = next((v for k, v in context.items() if k.lower() == key.lower()), None)
    wanted = [str(w) for w in _listed(wanted)]
    if op == "Null":
        return (have is None) == (wanted[0].lower() == "true")
    if have is None:
        return op.endswith("IfExists")
    base = op.removesuffix("IfExists")
    tests = {
        "StringEquals": lambda w, h: w == h,
        "StringLike": lambda w, h: _glob(w, h),
        "ArnLike": lambda w, h: _glob(w, h),
        "ArnEquals": lambda w, h: w == h,
        "Bool": lambda w, h: w.lower() == h.lower(),
    }
    if base not in tests:
        raise NotImplementedError(f"condition operator {op} (add it to policy_check)")
    return any(tests[base](w, h) for w in wanted for h in have)


def _applies(statement: dict[str, Any], req: Request) -> bool:
    if not any(_glob(a, req.action, case=False) for a in _listed(statement.get("Action", []))):
        return False
    resources = _listed(statement.get("Resource", []))
    if req.resource == "*":
        if "*" not in resources:
            return False
    elif not any(_glob(r, req.resource) for r in resources):
        return False
    return all(
        _condition(op, key, wanted, req.context)
        for op, pairs in statement.get("Condition", {}).items()
        for key, wanted in pairs.items()
    )


def allowed(policy: dict[str, Any], req: Request) -> bool:
    """IAM's rule within one policy: an explicit Deny wins, else some Allow must apply."""
    statements = _listed(policy["Statement"])
    if any(s["Effect"] == "Deny" and _applies(s, req) for s in statements):
        return False
    return any(s["Effect"] == "Allow" and _applies(s, req) for s in statements)


# -- the check --------------------------------------------------------------------------------


@dataclass
class Report:
    used: dict[str, set[str]]  # owner -> IAM actions its calls needed
    denied: list[tuple[Call, Request]]
    unused: dict[str, set[str]]  # owner -> actions its policy grants that no recorded call needed


def granted_actions(policy: dict[str, Any]) -> set[str]:
    return {a for s in _listed(policy["Statement"]) if s["Effect"] == "Allow" for a in _listed(s["Action"])}


def check_policies(rec: Recorder, *, bucket: str | None = None, strict: bool = True) -> Report:
    """Check each recorded call against the controller policy (controller's calls) and the instance
    role's (trainer's calls, on `bucket`). With `strict`, any denied call fails the test."""
    policies = {"controller": controller_policy()}
    trainer_buckets = {c.params.get("Bucket") for c in rec.of("trainer")} - {None}
    if bucket or trainer_buckets:
        policies["trainer"] = instance_role_policy(bucket or sorted(trainer_buckets)[0])
    used: dict[str, set[str]] = {o: set() for o in policies}
    denied: list[tuple[Call, Request]] = []
    for call in rec.calls:
        for req in requests(call):
            used[call.owner].add(req.action)
            if not allowed(policies[call.owner], req):
                denied.append((call, req))
    unused = {o: {a for a in granted_actions(p) if a not in used[o]} for o, p in policies.items()}
    report = Report(used, denied, unused)
    if strict and denied:
        lines = "\n".join(
            f"  {c.owner} {c.service}.{c.operation}: {r.action} on {r.resource} {r.context}"
            for c, r in denied
        )
        raise AssertionError(f"{len(denied)} call(s) the policies do not allow:\n{lines}")
    return report
