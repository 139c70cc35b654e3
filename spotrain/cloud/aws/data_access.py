"""Which dataset buckets the instance role may read: `spotrain init --data-bucket B[/prefix]` puts them
in the stack's parameters (infra/spotrain.yaml), and the plan refuses an `s3://` --data outside them
before anything is launched, because the role can otherwise read only `BUCKET/runs/*` and the
instance's `aws s3 sync` ends AccessDenied on every attempt.

CloudFormation cannot map over a list without a macro, so `init` passes the ARNs and the ListBucket
prefixes ready-made, beside the list as the user gave it (which is what is read back).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import boto3

from spotrain.cloud.aws import ClientError, client, error_code
from spotrain.errors import SpotrainError

_GRANT = re.compile(r"^(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(/(?P<prefix>[^*?]*))?$")


@dataclass(frozen=True)
class DataGrant:
    bucket: str
    prefix: str  # "" for the whole bucket, else without leading or trailing slashes

    def __str__(self) -> str:
        return f"{self.bucket}/{self.prefix}" if self.prefix else self.bucket

    def covers(self, uri: str) -> bool:
        """Whether `uri` (s3://bucket/key-prefix) lies inside this grant, at a path boundary."""
        want = parse(uri.removeprefix("s3://"))
        return want.bucket == self.bucket and (
            not self.prefix or want.prefix == self.prefix or want.prefix.startswith(self.prefix + "/")
        )


def parse(text: str) -> DataGrant:
    """`bucket` or `bucket/prefix`, as --data-bucket takes it; anything else is SpotrainError."""
    m = _GRANT.match(text.strip().removeprefix("s3://"))
    if not m:
        raise SpotrainError(
            f"--data-bucket {text!r} is not a bucket or bucket/prefix",
            "give the dataset's S3 bucket, optionally with a prefix, e.g. --data-bucket my-datasets/imagenet",
        )
    return DataGrant(m["bucket"], (m["prefix"] or "").strip("/"))


def parameters(grants: Sequence[DataGrant]) -> list[dict[str, str]]:
    """The stack's four Data* parameters for `grants` (all "" for none: the template then adds no
    statement, since IAM refuses a statement with no resource)."""
    objects = [f"arn:aws:s3:::{g.bucket}/{g.prefix + '/' if g.prefix else ''}*" for g in grants]
    listing = sorted({p for g in grants for p in ([g.prefix, f"{g.prefix}/*"] if g.prefix else ["*"])})
    values = {
        "DataBuckets": ",".join(str(g) for g in grants),
        "DataBucketArns": ",".join(sorted({f"arn:aws:s3:::{g.bucket}" for g in grants})),
        "DataObjectArns": ",".join(objects),
        "DataListPrefixes": ",".join(listing),
    }
    return [{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()]


def from_parameter(value: str | None) -> tuple[DataGrant, ...]:
    return tuple(parse(v) for v in (value or "").split(",") if v.strip())


def granted(
    sess: boto3.Session, *, region: str, stack_name: str = "spotrain"
) -> tuple[DataGrant, ...] | None:
    """The grants of spotrain's stack in `region`, read from its parameters; None when no stack."""
    try:
        stack = client(sess, "cloudformation", region).describe_stacks(StackName=stack_name)["Stacks"][0]
    except ClientError as err:
        if error_code(err) == "ValidationError":  # "Stack with id spotrain does not exist"
            return None
        raise
    return of_stack(stack)


def of_stack(stack: Mapping[str, Any] | None) -> tuple[DataGrant, ...]:
    """The grants a described stack holds, from its DataBuckets output (the list joined by the
    template: moto shows a CommaDelimitedList parameter as a Python list's repr); none before it had one."""
    outputs = {o["OutputKey"]: o["OutputValue"] for o in (stack or {}).get("Outputs", [])}
    return from_parameter(outputs["DataBuckets"]) if "DataBuckets" in outputs else ()


def check_readable(sess: boto3.Session, *, uri: str, regions: Sequence[str]) -> None:
    """Refuse an s3:// --data the instance role may not read (before anything is launched). A region
    with no stack is left to the launch's own instance-profile check."""
    for region in regions:
        grants = granted(sess, region=region)
        if grants is None:
            continue
        if any(g.covers(uri) for g in grants):
            return
        want = parse(uri.removeprefix("s3://"))
        have = ", ".join(str(g) for g in grants) or "none"
        raise SpotrainError(
            f"--data {uri}: the instance role may not read it (spotrain's stack in {region} grants "
            f"read access to: {have}); the instance's copy of the data would end AccessDenied",
            f"run `spotrain init --region {region} --data-bucket {want}` (with any --data-bucket you "
            "already use) so the role may read it, then launch again",
        )
