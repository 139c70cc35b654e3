"""Spot instances: quote zones, check the quota, launch with failover (watching and ending them:
cloud/aws/lifecycle.py).

Launching is `run_instances` with one-time spot market options, IMDSv2 required, an encrypted gp3 root,
our tags on the instance, its volumes and its spot request. Zones are tried in the order the plan gave
(spotrain/plan.py), moving on after the capacity errors named in ZONE_ERRORS, or to the next region
after a region-wide one; each create call runs on a client with retries off so failover is quick.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import boto3

from spotrain import catalog
from spotrain.cloud import (
    ImageChoice,
    LaunchedInstance,
    NoCapacity,
    ZoneFailure,
    ZoneQuote,
    tags,
)
from spotrain.cloud.aws import (
    ClientError,
    client,
    error_code,
    error_message,
    images,
    prices,
    pricing,
    quotas,
    region_of,
    translated,
)
from spotrain.errors import SpotrainError

# Errors that say "not here, not now": try the next zone.
ZONE_ERRORS = {
    "InsufficientInstanceCapacity",
    "InsufficientCapacity",
    "InsufficientHostCapacity",
    "SpotMaxPriceTooLow",
    "Unsupported",  # the type is not offered in this zone
    "InsufficientFreeAddressesInSubnet",
    "capacity-not-available",  # spot request status codes, should a request path report them
    "capacity-oversubscribed",
    "price-too-low",
}
# Errors that hold for every zone of the region: try the next region.
REGION_ERRORS = {"MaxSpotInstanceCountExceeded", "VcpuLimitExceeded", "InstanceLimitExceeded"}
THROTTLED = {"RequestLimitExceeded", "Throttling", "ThrottlingException"}
LIVE_STATES = ["pending", "running", "stopping", "stopped", "shutting-down"]
TAG_SSH_USER = "spotrain:ssh-user"  # the image's login user, read back by AwsCloud.target


@dataclass(frozen=True)
class LaunchSpec:
    run_id: str
    attempt_id: str
    owner: str
    instance_type: str
    root_gb: int  # gp3, encrypted, sized by the recipe
    data_snapshot_id: str | None = None  # an EBS snapshot holding the dataset, attached at /dev/sdf
    data_gb: int | None = None  # None: the snapshot's size
    data_iops: int = 3000  # gp3 Iops and Throughput (MiB/s) of the volume the data is on: the
    data_mib_s: int = 125  # snapshot's, else the root (plan.py sized them; 3000/125 is the baseline)
    instance_profile: str | None = None  # name or ARN, from infra/
    max_price: float | None = None  # $/h; None: AWS's cap (the on-demand price)
    user_data: str | None = None
    nodes: int = 1  # instances launched together, in one zone, all or none


@dataclass(frozen=True)
class RegionResources:
    """What a launch needs in one region: its image, key pair and the run's security group there."""

    region: str
    image: ImageChoice
    key_name: str
    security_group_id: str
    subnets: dict[str, str] | None = None  # zone -> its default subnet; None: let EC2 choose
    placement_group: str | None = None  # the run's cluster placement group (a multi-node run)


def subnet_missing(res: RegionResources, zone: str) -> ZoneFailure | None:
    """Why `zone` cannot be used when the region's default VPC has no default subnet there."""
    if res.subnets is None or zone in res.subnets:
        return None
    return ZoneFailure(
        res.region,
        zone,
        "NoDefaultSubnet",
        f"the default VPC has no default subnet in {zone} "
        f"(`aws ec2 create-default-subnet --availability-zone {zone}` makes one)",
    )


@dataclass(frozen=True)
class ZoneCandidate:
    """One zone an attempt may try, with its price now: the plan orders them (spotrain/plan.py)."""

    region: str
    quote: ZoneQuote

    @property
    def zone(self) -> str:
        return self.quote.zone

    @property
    def usd_per_hour(self) -> float:
        return self.quote.usd_per_hour


@dataclass(frozen=True)
class ZoneOrder:
    """What one attempt tries: the zones in order, and the zones or regions left out, with why."""

    candidates: tuple[ZoneCandidate, ...]
    skipped: tuple[ZoneFailure, ...] = ()


# -- prices for the plan ----------------------------------------------------------------------


@translated("read spot prices")
def region_quotes(
    sess: boto3.Session, *, instance_type: str, regions: Sequence[str], now: datetime | None = None
) -> dict[str, list[ZoneQuote]]:
    """Each region's zone quotes now (its 24 h range, the discount against the region's on-demand
    price), in the order the regions are given; an empty list where the type has no spot price.
    Unordered within a region: the plan decides the order."""
    itype = catalog.instance_type(instance_type)
    now = now or datetime.now(timezone.utc)
    found: dict[str, list[ZoneQuote]] = {}
    for region in (region_of(sess, r) for r in regions):
        samples = prices.history(
            sess, region=region, instance_type=itype.name, start=now - timedelta(days=1), end=now
        )
        on_demand = pricing.on_demand(sess, region=region, instance_type=itype.name).usd_per_hour
        found[region] = prices.zone_quotes(samples, now=now.timestamp(), on_demand=on_demand)
    return found


# -- launch -----------------------------------------------------------------------------------


@translated("list availability zones")
def region_zones(sess: boto3.Session, region: str) -> list[str]:
    """The availability zones of `region` that this account can launch in."""
    ec2 = client(sess, "ec2", region)
    found = ec2.describe_availability_zones(Filters=[{"Name": "region-name", "Values": [region]}])
    return sorted(
        z["ZoneName"] for z in found["AvailabilityZones"] if z.get("State", "available") == "available"
    )


def client_token(spec: LaunchSpec, zone: str) -> str:
    """Idempotency: the same attempt asked twice in the same zone gets the same instance."""
    return hashlib.sha256(f"{spec.run_id}/{spec.attempt_id}/{zone}".encode()).hexdigest()[:64]


def run_params(spec: LaunchSpec, zone: str, res: RegionResources) -> dict[str, Any]:
    """The run_instances arguments for one spot instance of `spec` in `zone`."""
    spot: dict[str, Any] = {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"}
    if spec.max_price is not None:
        spot["MaxPrice"] = f"{spec.max_price:.5f}"
    ebs = {"VolumeType": "gp3", "Encrypted": True, "DeleteOnTermination": True}
    # Only the volume the trainer reads its data from is provisioned above gp3's baseline.
    fast = {"Iops": spec.data_iops, "Throughput": spec.data_mib_s}
    root = {**ebs, "VolumeSize": spec.root_gb, **({} if spec.data_snapshot_id else fast)}
    disks = [{"DeviceName": res.image.root_device_name, "Ebs": root}]
    if spec.data_snapshot_id:
        data = {**ebs, **fast, "SnapshotId": spec.data_snapshot_id}
        if spec.data_gb:
            data["VolumeSize"] = spec.data_gb
        disks.append({"DeviceName": "/dev/sdf", "Ebs": data})
    tag_list = tags(run_id=spec.run_id, owner=spec.owner) + [
        {"Key": "spotrain:attempt", "Value": spec.attempt_id},
        {"Key": "Name", "Value": f"spotrain-{spec.run_id}"},
    ]
    # The login user goes on the instance so that a fresh controller process (resume, logs) knows it.
    inst_tags = [*tag_list, {"Key": TAG_SSH_USER, "Value": res.image.ssh_user}]
    params: dict[str, Any] = {
        "ImageId": res.image.image_id,
        "InstanceType": spec.instance_type,
        # All the nodes in one request, MinCount = MaxCount: EC2 launches all of them or none
        # ("If you specify a minimum number of instances that is greater than the number Amazon EC2 can
        # launch in the target Availability Zone, Amazon EC2 launches no instances", RunInstances API),
        # and one request is what a cluster placement group asks for ("Placement groups", EC2 guide).
        "MinCount": spec.nodes,
        "MaxCount": spec.nodes,
        "KeyName": res.key_name,
        "Placement": {
            "AvailabilityZone": zone,
            **({"GroupName": res.placement_group} if res.placement_group else {}),
        },
        "InstanceMarketOptions": {"MarketType": "spot", "SpotOptions": spot},
        "MetadataOptions": {
            "HttpTokens": "required",
            "HttpEndpoint": "enabled",
            "HttpPutResponseHopLimit": 1,  # IMDS reachable from the host only, not from containers
        },
        "BlockDeviceMappings": disks,
        "TagSpecifications": [
            {"ResourceType": "instance", "Tags": inst_tags},
            *({"ResourceType": kind, "Tags": tag_list} for kind in ("volume", "spot-instances-request")),
        ],
        "ClientToken": client_token(spec, zone),
    }
    subnet = (res.subnets or {}).get(zone)
    if subnet:
        # The zone's own subnet, as SkyPilot passes it: without one EC2 picks the VPC's default subnet
        # for the zone and fails when there is none. A public address is asked for explicitly (a
        # default subnet gives one, another subnet may not); with NetworkInterfaces the groups go on
        # the interface, since RunInstances refuses SecurityGroupIds beside it.
        params["NetworkInterfaces"] = [
            {
                "DeviceIndex": 0,
                "SubnetId": subnet,
                "Groups": [res.security_group_id],
                "AssociatePublicIpAddress": True,
                "DeleteOnTermination": True,
            }
        ]
    else:
        params["SecurityGroupIds"] = [res.security_group_id]
    if spec.instance_profile:
        key = "Arn" if spec.instance_profile.startswith("arn:") else "Name"
        params["IamInstanceProfile"] = {key: spec.instance_profile}
    if spec.user_data:
        itype = catalog.instance_type(spec.instance_type)
        params["UserData"] = images.with_exports(spec.user_data, images.boot_exports(res.image, itype))
    return params


def _run_once(ec2: Any, params: dict[str, Any], *, tries: int = 4) -> list[dict[str, Any]]:
    """run_instances, retrying only throttling (the client token makes a retry safe)."""
    for i in range(tries):
        try:
            return ec2.run_instances(**params)["Instances"]
        except ClientError as err:
            if error_code(err) not in THROTTLED or i == tries - 1:
                raise
            time.sleep(min(8.0, 0.5 * 2**i))
    raise AssertionError("unreachable")


def all_failed(spec: LaunchSpec, failures: list[ZoneFailure]) -> SpotrainError:
    """Why no zone took the launch; NoCapacity when each refusal may pass with time (capacity, price)."""
    lines = "\n".join(f"  {f.region}/{f.zone}: {f.code}: {f.message}" for f in failures)
    passing = failures and all(
        f.code in ZONE_ERRORS | REGION_ERRORS | {"MaxPrice", "Quota", "PartialLaunch"} for f in failures
    )
    return (NoCapacity if passing else SpotrainError)(
        f"no spot capacity for {spec.instance_type} in any zone tried ({len(failures)}):\n{lines}",
        "try again in a few minutes, allow more regions, raise --max-price, or pick another --instance",
    )


@translated("launch a spot instance")
def launch_spot(
    sess: boto3.Session,
    *,
    spec: LaunchSpec,
    candidates: Sequence[ZoneCandidate],
    resources: Callable[[str], RegionResources | ZoneFailure],
    skipped: Sequence[ZoneFailure] = (),
) -> LaunchedInstance:
    """One spot instance in the first of `candidates` that has capacity. The quota is checked for
    every region before any launch call; `resources(region)` is asked once per region, when needed,
    and may answer with the reason the region cannot be used.
    All failing raises one SpotrainError listing every zone tried and why."""
    itype = catalog.instance_type(spec.instance_type)
    regions = list(dict.fromkeys(c.region for c in candidates))
    failures = list(skipped) + quotas.gate(sess, regions=regions, itype=itype, count=spec.nodes)
    blocked = {f.region for f in failures if f.zone == "*"}
    ready: dict[str, RegionResources] = {}
    for cand in candidates:
        if cand.region in blocked:
            continue
        if cand.region not in ready:
            got = resources(cand.region)
            if isinstance(got, ZoneFailure):
                failures.append(got)
                blocked.add(cand.region)
                continue
            ready[cand.region] = got
        no_subnet = subnet_missing(ready[cand.region], cand.zone)
        if no_subnet is not None:
            failures.append(no_subnet)
            continue
        ec2 = client(sess, "ec2", cand.region, fast=True)
        try:
            got = _run_once(ec2, run_params(spec, cand.zone, ready[cand.region]))
        except ClientError as err:
            code = error_code(err)
            if code not in ZONE_ERRORS | REGION_ERRORS:
                raise
            failures.append(ZoneFailure(cand.region, cand.zone, code, error_message(err)))
            if code in REGION_ERRORS:
                blocked.add(cand.region)
            continue
        partial = partial_launch(client(sess, "ec2", cand.region), spec, cand, got)
        if partial is not None:
            failures.append(partial)
            continue
        return LaunchedInstance(
            instance_id=got[0]["InstanceId"],
            region=cand.region,
            zone=cand.zone,
            instance_type=spec.instance_type,
            spot_usd_per_hour=cand.usd_per_hour,
            tried=failures,
            peer_ids=tuple(i["InstanceId"] for i in got[1:]),
        )
    raise all_failed(spec, failures)


def partial_launch(
    ec2: Any, spec: LaunchSpec, cand: ZoneCandidate, got: list[dict[str, Any]]
) -> ZoneFailure | None:
    """A multi-node launch that came back short, or with a node EC2 ended at once (a spot request it
    could not fill after all), is no launch: every node of it is terminated here, so nothing of the
    attempt is left running in that zone, and the failover moves on."""
    if spec.nodes == 1:
        return None
    ids = [i["InstanceId"] for i in got]
    found = ec2.describe_instances(InstanceIds=ids)["Reservations"]
    ended = [
        i["InstanceId"] for r in found for i in r["Instances"] if i["State"]["Name"] not in LIVE_STATES[:2]
    ]
    if len(ids) == spec.nodes and not ended:
        return None
    alive = [i for i in ids if i not in ended]
    if alive:
        ec2.terminate_instances(InstanceIds=alive)
    return ZoneFailure(
        cand.region,
        cand.zone,
        "PartialLaunch",
        f"{len(ids) - len(ended)} of {spec.nodes} nodes started ({', '.join(ended) or 'too few'} did not): "
        "all terminated",
    )
