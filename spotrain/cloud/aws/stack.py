"""`spotrain init`: the account side as code (infra/spotrain.yaml), created or updated with CloudFormation.

Steps, so that a mistake is found before anything is created:
  1. check the region (it must have a PyTorch Deep Learning AMI) and the bucket name;
  2. read the stack; one left in ROLLBACK_COMPLETE by a failed create is deleted first (it cannot
     be updated), one still in progress is waited for;
  3. a new bucket name must be free (a bucket that exists, above all someone else's, is refused);
  4. create the stack, or update it when the template or its parameters changed; else "up to date"
     (also what CloudFormation's "No updates are to be performed" means);
  5. store the outputs in `$SPOTRAIN_HOME/infra-<region>.json`, where the controller reads them.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import WaiterError

from spotrain.cloud.aws import (
    ClientError,
    aws_errors,
    client,
    data_access,
    error_code,
    error_message,
    images,
    region_of,
)
from spotrain.errors import SpotrainError

INFRA_DIR = Path(__file__).resolve().parents[3] / "infra"
TEMPLATE = INFRA_DIR / "spotrain.yaml"
POLICY = INFRA_DIR / "controller-policy.json"
TEMPLATE_TAG = "spotrain:template-sha256"
INIT_HINT = (
    "`spotrain init` creates IAM roles and a bucket, so it needs more than the controller policy: run it "
    "as an administrator (infra/controller-policy.md lists what it calls), then use the controller policy"
)
PROBE_TYPE = "g5.xlarge"  # any current GPU type: the region must offer a PyTorch DLAMI for it
DONE = {"CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "IMPORT_COMPLETE"}
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class InfraOutputs:
    bucket: str
    bucket_arn: str
    instance_profile_name: str
    instance_profile_arn: str
    instance_role_arn: str
    fis_role_arn: str | None = None  # `spotrain smoke`'s interruption role: a stack from before it has none


@dataclass(frozen=True)
class InitResult:
    region: str
    stack_name: str
    status: str  # "created", "updated" or "up to date"
    outputs: InfraOutputs
    state_file: Path

    @property
    def changed(self) -> bool:
        return self.status != "up to date"


def state_file(region: str, home: Path | None = None) -> Path:
    """Where `init` keeps a region's outputs: HOME/infra-REGION.json, HOME by default $SPOTRAIN_HOME
    (else ~/.spotrain); the dry-run passes its own directory, so its stack never shadows a real one."""
    home = home or Path(os.environ.get("SPOTRAIN_HOME") or "~/.spotrain").expanduser()
    return home / f"infra-{region}.json"


def load_outputs(region: str, home: Path | None = None) -> InfraOutputs | None:
    """The outputs `spotrain init` stored for `region`, or None before it ran there."""
    path = state_file(region, home)
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return InfraOutputs(**{k: data[k] for k in InfraOutputs.__dataclass_fields__})


def find_outputs(
    sess: boto3.Session, *, region: str, stack_name: str = "spotrain", home: Path | None = None
) -> InfraOutputs | None:
    """The stack's outputs for the controller: from the state file, else read back from the stack
    (init ran on another machine) and stored; None when spotrain's stack is not in `region`."""
    found = load_outputs(region, home)
    if found is not None:
        return found
    with aws_errors("read spotrain's stack outputs"):
        stack = _describe(client(sess, "cloudformation", region), stack_name)
    if stack is None or stack.get("StackStatus") not in DONE:
        return None
    _save(region, stack_name, _outputs(stack), home)
    return _outputs(stack)


def find_instance_profile(
    sess: boto3.Session, *, regions: Sequence[str], home: Path | None = None
) -> str | None:
    """The instance profile of spotrain's stack in the first of `regions` that has one. IAM is global
    (an instance profile is not a regional resource), so a stack made by `spotrain init` in any region
    the run may use gives a role that instances launched in every other region can take."""
    for region in regions:
        found = find_outputs(sess, region=region, home=home)
        if found is not None:
            return found.instance_profile_arn
    return None


def outputs(
    sess: boto3.Session, *, region: str, stack_name: str = "spotrain", home: Path | None = None
) -> InfraOutputs:
    """As `find_outputs`, but no stack raises SpotrainError saying to run init."""
    found = find_outputs(sess, region=region, stack_name=stack_name, home=home)
    if found is None:
        raise SpotrainError(
            f"spotrain is not set up in {region}: no bucket or instance role there yet",
            f"run `spotrain init --region {region}` once (as an administrator)",
        )
    return found


def check_bucket_name(name: str) -> str:
    """S3's naming rules, checked before any call; the message says which rule `name` breaks."""
    why = ""
    if not 3 <= len(name) <= 63:
        why = f"it is {len(name)} characters long; S3 allows 3 to 63"
    elif not _BUCKET.match(name):
        why = "only lower-case letters, digits, dots and hyphens, starting and ending with a letter or digit"
    elif ".." in name or ".-" in name or "-." in name:
        why = "no two dots in a row, and no dot next to a hyphen"
    elif _is_ip(name):
        why = "it must not look like an IP address"
    elif name.startswith(("xn--", "sthree-", "amzn-s3-demo-")) or name.endswith(
        ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
    ):
        why = "S3 reserves that prefix or suffix"
    if why:
        raise SpotrainError(
            f"bucket name '{name}' is not valid: {why}",
            "pick another --bucket, e.g. spotrain-<account>-<region>, or leave it out for that default",
        )
    return name


def _is_ip(name: str) -> bool:
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        return False
    return True


def print_policy(*, bucket: str | None = None) -> str:
    """The controller's IAM policy; with `bucket`, its S3 statements name that bucket."""
    text = POLICY.read_text(encoding="utf-8")
    if bucket:
        text = text.replace("arn:aws:s3:::spotrain-*", f"arn:aws:s3:::{check_bucket_name(bucket)}")
    return text


def template_body() -> str:
    return TEMPLATE.read_text(encoding="utf-8")


def _describe(cfn: Any, stack_name: str) -> dict[str, Any] | None:
    try:
        return cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
    except ClientError as err:
        if error_code(err) == "ValidationError" and "does not exist" in error_message(err):
            return None
        raise


def _wait(cfn: Any, stack_name: str, waiter: str) -> dict[str, Any]:
    """Wait for the stack with boto3's waiter; a failure raises SpotrainError with CloudFormation's reason."""
    try:
        cfn.get_waiter(waiter).wait(StackName=stack_name, WaiterConfig={"Delay": 5, "MaxAttempts": 360})
    except WaiterError as err:
        raise _failed(cfn, stack_name, str(err)) from None
    stack = _describe(cfn, stack_name)
    assert stack is not None
    return stack


def _failed(cfn: Any, stack_name: str, fallback: str) -> SpotrainError:
    reasons = [
        f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason', '')}"
        for e in cfn.describe_stack_events(StackName=stack_name)["StackEvents"]
        if e["ResourceStatus"].endswith("FAILED") and e.get("ResourceStatusReason")
    ]
    text = "; ".join(reversed(reasons)) or fallback
    if "already exist" in text and "Bucket" in text:
        return _bucket_taken("", text)
    return SpotrainError(
        f"CloudFormation could not set up stack '{stack_name}': {text}",
        "see the stack's events in the CloudFormation console; `spotrain init` again after fixing it",
    )


def _bucket_taken(bucket: str, detail: str) -> SpotrainError:
    name = f"'{bucket}' " if bucket else ""
    return SpotrainError(
        f"the bucket name {name}is taken: {detail}. S3 bucket names are global, and spotrain only uses a "
        "bucket its own stack created",
        "pick another name with --bucket (e.g. add your account id), or leave --bucket out for "
        "spotrain-<account>-<region>",
    )


def _check_bucket_free(s3: Any, bucket: str) -> None:
    """Step 3: a bucket that already exists cannot be created by the stack."""
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as err:
        code = error_code(err)
        if code in {"404", "NoSuchBucket", "NotFound"}:
            return
        if code in {"403", "AccessDenied", "Forbidden"}:
            raise _bucket_taken(bucket, "it exists and belongs to another AWS account") from None
        raise
    raise _bucket_taken(bucket, "it exists already, outside spotrain's stack")


def _check_region(sess: boto3.Session, region: str) -> None:
    """Step 1: no Deep Learning AMI in the region, no point in a bucket there."""
    try:
        images.choose_image(sess, region=region, instance_type=PROBE_TYPE)
    except SpotrainError as err:
        raise SpotrainError(
            f"region {region} has no PyTorch Deep Learning AMI, so spotrain cannot launch there ({err.message})",
            "run `spotrain init --region` with a region that has one, e.g. us-east-1 or us-west-2",
        ) from None


def _outputs(stack: dict[str, Any]) -> InfraOutputs:
    out = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    return InfraOutputs(
        bucket=out["BucketName"],
        bucket_arn=out["BucketArn"],
        instance_profile_name=out["InstanceProfileName"],
        instance_profile_arn=out["InstanceProfileArn"],
        instance_role_arn=out["InstanceRoleArn"],
        fis_role_arn=out.get("FisRoleArn"),
    )


def _save(region: str, stack_name: str, outputs: InfraOutputs, home: Path | None) -> Path:
    path = state_file(region, home)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"region": region, "stack_name": stack_name, **asdict(outputs)}, indent=2) + "\n"
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    return path


def _params(stack: dict[str, Any] | None) -> dict[str, str]:
    return {p["ParameterKey"]: p["ParameterValue"] for p in (stack or {}).get("Parameters", [])}


def _digest(stack: dict[str, Any]) -> str:
    return next((t["Value"] for t in stack.get("Tags", []) if t["Key"] == TEMPLATE_TAG), "")


def _settle(cfn: Any, stack_name: str, stack: dict[str, Any] | None) -> dict[str, Any] | None:
    """Step 2: wait out a stack in progress; delete one a failed create left in ROLLBACK_COMPLETE."""
    status = (stack or {}).get("StackStatus", "")
    if status.endswith("_IN_PROGRESS"):
        waiter = (
            "stack_create_complete" if status.startswith(("CREATE", "ROLLBACK")) else "stack_update_complete"
        )
        with contextlib.suppress(WaiterError):  # it ended failed or rolled back: look again below
            cfn.get_waiter(waiter).wait(StackName=stack_name, WaiterConfig={"Delay": 5, "MaxAttempts": 360})
        stack = _describe(cfn, stack_name)
        status = (stack or {}).get("StackStatus", "")
    if status in {"ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "DELETE_COMPLETE"}:
        if status != "DELETE_COMPLETE":
            cfn.delete_stack(StackName=stack_name)
            cfn.get_waiter("stack_delete_complete").wait(
                StackName=stack_name, WaiterConfig={"Delay": 5, "MaxAttempts": 360}
            )
        return None
    if stack is not None and status not in DONE:
        raise SpotrainError(
            f"stack '{stack_name}' is {status}, which `spotrain init` cannot update",
            "look at its events in the CloudFormation console, fix or delete it, then run init again",
        )
    return stack


def init(
    sess: boto3.Session,
    *,
    region: str | None,
    bucket: str | None = None,
    data_buckets: Sequence[str] | None = None,
    stack_name: str = "spotrain",
    home: Path | None = None,
) -> InitResult:
    """Create or update spotrain's stack in `region` and store its outputs (in `home`, default
    $SPOTRAIN_HOME); a rerun changes nothing. `data_buckets` (bucket or bucket/prefix) are the datasets
    the instance role may read; None keeps the stack's."""
    grants = None if data_buckets is None else tuple(data_access.parse(d) for d in data_buckets)
    with aws_errors("set up spotrain's bucket and instance role", policy_hint=INIT_HINT):
        return _init(sess, region_of(sess, region), bucket, grants, stack_name, home)


def _init(
    sess: boto3.Session,
    region: str,
    bucket: str | None,
    grants: tuple[data_access.DataGrant, ...] | None,
    stack_name: str,
    home: Path | None,
) -> InitResult:
    if bucket is not None:
        check_bucket_name(bucket)
    _check_region(sess, region)
    cfn = client(sess, "cloudformation", region)
    stack = _settle(cfn, stack_name, _describe(cfn, stack_name))
    current = _params(stack).get("BucketName")
    if bucket is None:
        bucket = current or _default_bucket(sess, region)
    had = data_access.of_stack(stack)
    grants = had if grants is None else grants
    body = template_body()
    digest = hashlib.sha256(body.encode()).hexdigest()
    if stack is not None and current == bucket and grants == had and _digest(stack) == digest:
        outputs = _outputs(stack)
        return InitResult(region, stack_name, "up to date", outputs, _save(region, stack_name, outputs, home))
    if bucket != current:
        _check_bucket_free(client(sess, "s3", region), bucket)
    args = {
        "StackName": stack_name,
        "TemplateBody": body,
        "Parameters": [
            {"ParameterKey": "BucketName", "ParameterValue": bucket},
            *data_access.parameters(grants),
        ],
        "Capabilities": ["CAPABILITY_IAM"],
        "Tags": [{"Key": TEMPLATE_TAG, "Value": digest}, {"Key": "spotrain:owner", "Value": "spotrain-init"}],
    }
    status = "created" if stack is None else "updated"
    try:
        if stack is None:
            cfn.create_stack(**args, OnFailure="ROLLBACK")
        else:
            cfn.update_stack(**args)
    except ClientError as err:
        if error_code(err) in {"BucketAlreadyExists", "BucketAlreadyOwnedByYou"}:
            raise _bucket_taken(bucket, error_message(err)) from None
        if error_code(err) == "ValidationError" and "No updates are to be performed" in error_message(err):
            status = "up to date"
        else:
            raise
    if status != "up to date":
        stack = _wait(
            cfn, stack_name, "stack_create_complete" if status == "created" else "stack_update_complete"
        )
    assert stack is not None
    outputs = _outputs(stack)
    return InitResult(region, stack_name, status, outputs, _save(region, stack_name, outputs, home))


def _default_bucket(sess: boto3.Session, region: str) -> str:
    account = client(sess, "sts", region).get_caller_identity()["Account"]
    return f"spotrain-{account}-{region}"
