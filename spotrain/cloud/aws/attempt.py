"""Start one attempt: the single call the orchestrator makes to get a spot instance for a run.

Steps, in order, so that a mistake is found before anything is created and nothing is left behind:
  1. check what the user gave (instance type, regions, --ssh-cidr, --ami) without creating anything;
  2. take the zones in the order the plan gave (spotrain/plan.py: prices, --zone, --max-price, the
     zone that just interrupted the run last); nothing here sorts or filters them;
  3. choose the image for the first region to try (a bad --ami fails here);
  4. check the spot vCPU quota of every region, before any launch call (in launch_spot);
  5. per region, when first needed: image, the data snapshot (regional), key pair, the run's security
     group, the default subnet of each zone; launch with failover, skipping what a region or zone lacks;
  6. on failure, delete the security groups this call made, so nothing is left running or open.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from spotrain import catalog
from spotrain.cloud import ImageChoice, KeyPair, LaunchedInstance, SecurityGroup, ZoneFailure
from spotrain.cloud.aws import ClientError, client, error_code, images, network, region_of, translated
from spotrain.cloud.aws.instances import LaunchSpec, RegionResources, ZoneOrder, all_failed, launch_spot
from spotrain.errors import SpotrainError


@dataclass(frozen=True)
class AttemptRequest:
    spec: LaunchSpec
    regions: Sequence[str]  # the run's regions (checked, and named when none can be used)
    state_dir: Path  # where the private key is kept
    order: ZoneOrder  # the zones to try, in this order (plan.zone_order): the launch follows it
    ssh_cidr: str | None = None  # None: this machine's public address, /32
    ami: str | None = None  # overrides the Deep Learning AMI (an id is per region: one region only)
    public_key: Path | None = None  # the user's own key instead of spotrain's


@dataclass(frozen=True)
class StartedAttempt:
    instance: LaunchedInstance
    image: ImageChoice
    key: KeyPair
    security_group: SecurityGroup
    resources: dict[str, RegionResources] = field(default_factory=dict)


def _check(sess: boto3.Session, req: AttemptRequest) -> tuple[list[str], str]:
    """Step 1: every user-given value, checked before anything is created."""
    catalog.instance_type(req.spec.instance_type)
    if not req.regions:
        raise SpotrainError("no region allowed for the launch", "pass --region (one or more)")
    regions = [region_of(sess, r) for r in req.regions]
    if req.ami and len(regions) > 1:
        raise SpotrainError(
            f"--ami {req.ami} names an image in one region, but {len(regions)} regions are allowed",
            "give one --region with --ami, or leave --ami out to use each region's Deep Learning AMI",
        )
    cidr = network.parse_ssh_cidr(req.ssh_cidr) if req.ssh_cidr else network.caller_cidr()
    return regions, cidr


def _nothing_to_try(spec: LaunchSpec, regions: list[str], skipped: list[ZoneFailure]) -> SpotrainError:
    if all(f.code == "NotOffered" for f in skipped):
        return SpotrainError(
            f"{spec.instance_type} is not offered as spot in {', '.join(regions)} (no spot price there)",
            f"allow another region, e.g. us-east-1 or us-west-2 (`spotrain prices --instance {spec.instance_type}`)",
        )
    return all_failed(spec, skipped)


def snapshot_missing(ec2: Any, region: str, snapshot_id: str | None) -> ZoneFailure | None:
    """EBS snapshots are regional ("Copy an Amazon EBS snapshot", EBS user guide): a region without
    the data snapshot is skipped with why, instead of its launch call stopping the whole failover."""
    if not snapshot_id:
        return None
    try:
        ec2.describe_snapshots(SnapshotIds=[snapshot_id])
        return None
    except ClientError as err:
        if error_code(err) not in {"InvalidSnapshot.NotFound", "InvalidSnapshotID.Malformed"}:
            raise
    return ZoneFailure(
        region,
        "*",
        "NoSnapshot",
        f"data snapshot {snapshot_id} is not in {region} (snapshots are regional; "
        f"`aws ec2 copy-snapshot --region {region} --source-region HOME --source-snapshot-id "
        f"{snapshot_id}` copies it)",
    )


@translated("start an attempt")
def start_attempt(sess: boto3.Session, req: AttemptRequest) -> StartedAttempt:
    """Launch one spot instance for `req.spec`'s run, trying the zones in the order `req.order` gives."""
    spec = req.spec
    regions, cidr = _check(sess, req)
    candidates, skipped = req.order.candidates, list(req.order.skipped)
    if not candidates:
        raise _nothing_to_try(spec, regions, skipped)
    home = candidates[0].region
    first = images.choose_image(sess, region=home, instance_type=spec.instance_type, override=req.ami)
    made: dict[str, RegionResources] = {}
    keys: dict[str, KeyPair] = {}
    groups: dict[str, SecurityGroup] = {}
    placed: list[tuple[str, str]] = []  # (region, placement group) made for a multi-node attempt

    def resources(region: str) -> RegionResources | ZoneFailure:
        if region == home:
            image = first
        else:
            try:
                image = images.choose_image(sess, region=region, instance_type=spec.instance_type)
            except SpotrainError as err:  # no image there: that region is out, the others are not
                return ZoneFailure(region, "*", "NoImage", err.message)
        ec2 = client(sess, "ec2", region)
        missing = snapshot_missing(ec2, region, spec.data_snapshot_id)
        if missing is not None:
            return missing
        keys[region] = network.ensure_key_pair(
            sess, region=region, owner=spec.owner, state_dir=req.state_dir, public_key=req.public_key
        )
        groups[region] = network.ensure_security_group(
            sess, region=region, run_id=spec.run_id, owner=spec.owner, ssh_cidr=cidr, peers=spec.nodes > 1
        )
        subnets = network.default_subnets(ec2, groups[region].vpc_id)
        placement = None
        if spec.nodes > 1:
            placement = network.ensure_placement_group(
                sess, region=region, run_id=spec.run_id, owner=spec.owner
            )
            placed.append((region, placement))
        made[region] = RegionResources(
            region, image, keys[region].name, groups[region].group_id, subnets, placement
        )
        return made[region]

    try:
        launched = launch_spot(sess, spec=spec, candidates=candidates, resources=resources, skipped=skipped)
    except BaseException:
        for region, group in groups.items():
            with contextlib.suppress(ClientError):
                client(sess, "ec2", region).delete_security_group(GroupId=group.group_id)
        for region, name in placed:
            with contextlib.suppress(ClientError):
                client(sess, "ec2", region).delete_placement_group(GroupName=name)
        raise
    region = launched.region
    return StartedAttempt(launched, made[region].image, keys[region], groups[region], made)
