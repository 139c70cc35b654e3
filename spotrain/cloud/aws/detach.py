"""`launch --detach`'s hand-off to AWS: the run's bundle and settings into its S3 prefix, then its launch
template and Auto Scaling group (cloud/aws/autoscaling.py) over the allowed zones of one region; after
that nothing of spotrain runs anywhere but on the group's instance (spotrain/onboard/supervisor.py).

The user data is the attached launch's (contract.user_data: infra/bootstrap.sh) with three exports
more, which make the bootstrap start the supervisor once the instance is ready.
"""

from __future__ import annotations

import io
import shlex
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import boto3

from spotrain.cloud.aws import autoscaling, client, images, network, translated
from spotrain.cloud.aws.instances import LaunchSpec, RegionResources
from spotrain.errors import SpotrainError
from spotrain.onboard.ledger import Ledger, RunSettings, settings_key
from spotrain.onboard.supervisor import RunBucket

SKIP = {"__pycache__", ".git"}


def bundle_key(run_id: str) -> str:
    """Where bootstrap.sh's detached stage fetches the bundle from."""
    return f"runs/{run_id}/detached/bundle.tar.gz"


def bundle_tar(sources: Sequence[tuple[Path, str]]) -> bytes:
    """A gzipped tar of each (directory, name in the bundle): regular files only, no caches."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for root, name in sources:
            for path in sorted(root.rglob("*")):
                rel = path.relative_to(root)
                if (
                    path.is_file()
                    and not path.is_symlink()
                    and not SKIP & set(rel.parts)
                    and path.suffix != ".pyc"
                ):
                    tar.add(path, arcname=f"{name}/{rel.as_posix()}", recursive=False)
    return buf.getvalue()


@dataclass(frozen=True)
class HandOff:
    """What a detached launch hands to AWS."""

    launch: LaunchSpec  # user_data: the attached launch's (bootstrap.sh)
    settings: RunSettings
    zones: tuple[str, ...]  # the allowed zones of settings.region, in the plan's order
    state_dir: Path
    ssh_cidr: str | None  # who may reach the instance (`logs -f` live); None: this machine's /32
    bundle: tuple[tuple[Path, str], ...]  # (trainer/, "trainer"), (spotrain/onboard/, "onboard")
    ami: str | None = None


def detached_exports(settings: RunSettings) -> list[str]:
    return [
        f"export SPOTRAIN_DETACHED_BUCKET={shlex.quote(settings.bucket)}",
        f"export SPOTRAIN_DETACHED_RUN={shlex.quote(settings.run_id)}",
        f"export SPOTRAIN_DETACHED_REGION={shlex.quote(settings.region)}",
    ]


@translated("read the run's ledger")
def read_ledger(sess: boto3.Session, *, region: str, bucket: str, run_id: str) -> Ledger:
    """The run's ledger as its supervisors wrote it (with the supervisor's own reader)."""
    return RunBucket(client(sess, "s3", region), bucket, run_id).ledger()


def read_settings(sess: boto3.Session, *, region: str, bucket: str, run_id: str) -> RunSettings:
    """The settings `launch --detach` wrote for the run's supervisor."""
    return RunBucket(client(sess, "s3", region), bucket, run_id).settings()


@translated("hand the run to an Auto Scaling group")
def hand_off(sess: boto3.Session, req: HandOff) -> autoscaling.GroupState:
    """Bundle and settings uploaded, then the template and the group; the group's state after."""
    region, spec = req.settings.region, req.launch
    ec2 = client(sess, "ec2", region)
    image = images.choose_image(sess, region=region, instance_type=spec.instance_type, override=req.ami)
    key = network.ensure_key_pair(sess, region=region, owner=spec.owner, state_dir=req.state_dir)
    group = network.ensure_security_group(
        sess,
        region=region,
        run_id=spec.run_id,
        owner=spec.owner,
        ssh_cidr=req.ssh_cidr or network.caller_cidr(),
    )
    found = network.default_subnets(ec2, group.vpc_id)
    subnets = {z: found[z] for z in req.zones if z in found}
    if not subnets:
        raise SpotrainError(
            f"no default subnet in any allowed zone of {region} ({', '.join(req.zones) or 'none allowed'})",
            f"make one: `aws ec2 create-default-subnet --availability-zone {region}a`, or allow other zones",
        )
    s3 = client(sess, "s3", region)
    s3.put_object(Bucket=req.settings.bucket, Key=bundle_key(spec.run_id), Body=bundle_tar(req.bundle))
    s3.put_object(
        Bucket=req.settings.bucket, Key=settings_key(spec.run_id), Body=req.settings.to_json().encode()
    )
    user_data = images.with_exports(spec.user_data or "#!/usr/bin/env bash\n", detached_exports(req.settings))
    launch = replace(spec, user_data=user_data)
    res = RegionResources(region, image, key.name, group.group_id, subnets)
    return autoscaling.create_group(sess, autoscaling.GroupSpec(launch, subnets), res)
