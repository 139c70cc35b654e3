"""What moto 5 does not emulate, added to its in-process backend: for the dry-run cloud and the tests.

Each helper patches moto's in-process model, so it reaches every boto3 client: in-process `mock_aws`
and a `ThreadedMotoServer` started by the same process alike (see shared/notes/moto.md). The patches
are process-wide: one dry-run cloud per process at a time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
import botocore.session
from botocore.awsrequest import AWSResponse
from moto.core import DEFAULT_ACCOUNT_ID
from moto.core.responses import ActionResult
from moto.ec2.models import ec2_backends
from moto.ec2.responses.spot_instances import SpotInstances
from moto.s3.models import S3Backend
from moto.servicequotas.models import ServiceQuotasBackend
from moto.ssm.models import Parameter, ssm_backends

from spotrain import catalog
from spotrain.cloud import TAG_OWNER, TAG_RUN
from spotrain.cloud.aws import client, images, network, stack
from spotrain.cloud.local import moto_placement
from spotrain.errors import SpotrainError

moto_placement.install()  # moto has no placement groups; a multi-node launch and the sweep use them

ACCOUNT = DEFAULT_ACCOUNT_ID
SPOT_QUOTA_CODES = ("L-7212CCBC", "L-3819A6DF")  # All P / All G and VT Spot Instance Requests
SPOT_TERMINATION = "Server.SpotInstanceTermination"
LOOPBACK_CIDR = "127.0.0.1/32"  # the dry-run's "caller address" for security groups
DUMMY_KEY = "testing"  # moto takes any credentials


@dataclass(frozen=True)
class Price:
    region: str
    zone: str
    instance_type: str
    t: datetime
    usd: float


def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _parse(value: Any) -> datetime | None:
    if not value:
        return None
    t = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _answer(mine: list[Price], start: datetime | None, end: datetime | None) -> list[Price]:
    """AWS's rule: the changes within [start, end] plus, per zone, the last change before start."""
    mine = [r for r in mine if end is None or r.t <= end]
    out = [r for r in mine if start is None or r.t >= start]
    if start is not None:
        last: dict[str, Price] = {}
        for r in mine:
            if r.t < start and (r.zone not in last or r.t > last[r.zone].t):
                last[r.zone] = r
        out.extend(last.values())
    return out


@contextmanager
def spot_prices(rows: list[Price]) -> Iterator[list[Price]]:
    """Serve `rows` from describe_spot_price_history as AWS would, newest first."""
    index: dict[tuple[str, str], list[Price]] = defaultdict(list)
    for r in rows:
        index[(r.region, r.instance_type)].append(r)

    def describe(self: SpotInstances) -> ActionResult:
        types = self._get_param("InstanceTypes", []) or sorted({t for (g, t) in index if g == self.region})
        zones = self._filters_from_querystring().get("availability-zone")
        start, end = _parse(self._get_param("StartTime")), _parse(self._get_param("EndTime"))
        out: list[Price] = []
        for itype in types:
            mine = [r for r in index.get((self.region, itype), []) if not zones or r.zone in zones]
            out.extend(_answer(mine, start, end))
        history = [
            {
                "InstanceType": r.instance_type,
                "ProductDescription": "Linux/UNIX",
                "SpotPrice": f"{r.usd:.6f}",
                "AvailabilityZone": r.zone,
                "Timestamp": _iso(r.t),
            }
            for r in sorted(out, key=lambda r: r.t, reverse=True)
        ]
        return ActionResult({"SpotPriceHistory": history})

    with mock.patch.object(SpotInstances, "describe_spot_price_history", describe):
        yield rows


def _unit(*key: object) -> float:
    """A deterministic number in [0, 1) from `key`: the same seed gives the same history in any process."""
    digest = hashlib.sha256(repr(key).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def seeded_history(
    *,
    regions: dict[str, list[str]],
    instance_types: list[str],
    now: datetime,
    days: float = 7.0,
    seed: int = 0,
) -> list[Price]:
    """A realistic spot price history: each zone changes price about every other hour, following a daily
    sine (peak in the zone's afternoon) plus level steps that last a day or two, between about 25%
    and 40% of the on-demand price. Zones differ in level and phase, so the cheapest zone changes
    within a day. Whether and how a price changes in an hour is a function of the seed and that hour
    alone, so a restarted process with the same seed serves the same past."""
    rows: list[Price] = []
    end_h = math.floor(now.timestamp() / 3600)
    first_h = end_h - math.ceil(days * 24)
    for region, zones in regions.items():
        for itype in instance_types:
            on_demand = catalog.instance_type(itype).on_demand_usd_per_hour
            for z, zone in enumerate(zones):
                level = 0.28 + 0.06 * _unit(seed, zone, itype, "level")
                phase = 24 * _unit(seed, zone, itype, "phase")
                for h in range(first_h - 6, end_h + 1):
                    if h % 6 and _unit(seed, zone, itype, "change", h) > 0.5:
                        continue  # no change this hour (at least one every 6 hours)
                    step = 0.04 * (_unit(seed, zone, itype, "step", h // 36) - 0.5)
                    sine = 0.03 * math.sin(2 * math.pi * (h + phase) / 24)
                    noise = 0.01 * (_unit(seed, zone, itype, "noise", h) - 0.5)
                    share = min(0.40, max(0.25, level + sine + step + noise + 0.002 * z))
                    t = datetime.fromtimestamp(h * 3600, timezone.utc)
                    rows.append(Price(region, zone, itype, t, round(on_demand * share, 4)))
    return rows


def add_dlami(
    region: str,
    *,
    name: str,
    ssm_name: str | None = None,
    created: datetime | None = None,
) -> str:
    """Register an amazon-owned image called `name`; publish its id at `ssm_name` if given."""
    backend = ec2_backends[ACCOUNT][region]
    ami = backend.register_image(name=name, description="Deep Learning AMI (dry-run)")
    ami.owner_alias = "amazon"
    ami.architecture = "x86_64"
    ami.owner_id = "898082745236"
    if created is not None:
        ami.creation_date = created
    if ssm_name:
        ssm = ssm_backends[ACCOUNT][region]
        ssm._parameters[ssm_name].append(
            Parameter(
                account_id=ACCOUNT,
                name=ssm_name,
                value=ami.id,
                parameter_type="String",
                description=None,
                allowed_pattern=None,
                keyid=None,
                last_modified_date=datetime.now(timezone.utc),
                version=1,
                data_type="aws:ec2:image",
            )
        )
    return ami.id


@contextmanager
def quotas(values: dict[str, float]) -> Iterator[None]:
    """Service Quotas answers EC2 quota codes with `values` (moto knows only the VPC quotas)."""
    original = ServiceQuotasBackend.get_service_quota

    def get(self: ServiceQuotasBackend, service_code: str, quota_code: str) -> dict[str, Any]:
        if service_code == "ec2" and quota_code in values:
            return {
                "ServiceCode": "ec2",
                "QuotaCode": quota_code,
                "QuotaName": f"quota {quota_code}",
                "Value": values[quota_code],
                "Unit": "None",
                "Adjustable": True,
                "GlobalQuota": False,
            }
        return original(self, service_code, quota_code)

    with mock.patch.object(ServiceQuotasBackend, "get_service_quota", get):
        yield


def interrupt(region: str, instance_id: str) -> None:
    """End an instance as AWS ends a reclaimed spot instance (moto has no interruption API)."""
    from moto.ec2.models.instances import StateReason

    inst = ec2_backends[ACCOUNT][region].get_instance(instance_id)
    inst.terminate()
    inst.state_reason = StateReason(f"{SPOT_TERMINATION}: Spot instance termination", SPOT_TERMINATION)


def user_data(region: str, instance_id: str) -> str | None:
    """The user data the instance was launched with, as EC2 hands it to cloud-init (read from moto's
    backend, not through the API: the instance reads it, not the controller)."""
    data = ec2_backends[ACCOUNT][region].get_instance(instance_id).user_data
    return data.decode() if data is not None else None


@contextmanager
def fis_interruptions(interrupt_instance: Callable[[str], None]) -> Iterator[None]:
    """FIS's `aws:ec2:send-spot-instance-interruptions` on moto (which stores experiments and does
    nothing): starting one calls `interrupt_instance(id)` for each spot instance its targets name by
    ARN, as AWS posts the notice on each and then reclaims it."""
    from moto.fis.models import FISBackend

    original = FISBackend.start_experiment

    def start(self: FISBackend, *args: Any, **kwargs: Any) -> dict[str, Any]:
        started = original(self, *args, **kwargs)
        for target in started.get("targets", {}).values():
            if target.get("resourceType") == "aws:ec2:spot-instance":
                for arn in target.get("resourceArns", []):
                    with suppress(SpotrainError):  # not a running dry-run instance: nothing to interrupt
                        interrupt_instance(arn.rsplit("/", 1)[-1])
        return started

    with mock.patch.object(FISBackend, "start_experiment", start):
        yield


def rename_instance(region: str, old_id: str, new_id: str) -> None:
    """Give a moto instance a chosen id, so that a re-registered dry-run instance keeps its old one."""
    inst = ec2_backends[ACCOUNT][region].get_instance(old_id)
    inst.id = new_id


@contextmanager
def persistent_bucket(bucket: str, root: Path) -> Iterator[None]:
    """Write every object put into (or deleted from) `bucket` through to `root/KEY` as well, so that a
    restarted dry-run can load them back (moto keeps S3 in this process's memory only)."""
    put, delete = S3Backend.put_object, S3Backend.delete_object

    def put_through(self: S3Backend, bucket_name: str, key_name: str, value: bytes, **kw: Any) -> Any:
        key = put(self, bucket_name, key_name, value, **kw)
        path = root / key_name
        if bucket_name == bucket and path.resolve().is_relative_to(root.resolve()):
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".part")
            tmp.write_bytes(bytes(key.value))
            tmp.replace(path)
        return key

    def delete_through(self: S3Backend, bucket_name: str, key_name: str, *a: Any, **kw: Any) -> Any:
        out = delete(self, bucket_name, key_name, *a, **kw)
        if bucket_name == bucket:
            (root / key_name).unlink(missing_ok=True)
        return out

    with (
        mock.patch.object(S3Backend, "put_object", put_through),
        mock.patch.object(S3Backend, "delete_object", delete_through),
    ):
        yield


def saved_objects(root: Path) -> Iterator[tuple[str, bytes]]:
    """The (key, bytes) pairs `persistent_bucket` wrote under `root`."""
    if root.is_dir():
        for path in sorted(root.rglob("*")):
            if path.is_file() and not path.name.endswith(".part"):
                yield path.relative_to(root).as_posix(), path.read_bytes()


def seed_dlamis(region: str) -> None:
    """The newest image of each group, by SSM parameter, so every family in the catalog boots."""
    for name, ssm_name in images.dry_run_images():
        add_dlami(region, name=name, ssm_name=ssm_name)


def restore_instance(
    sess: boto3.Session,
    *,
    instance_id: str,
    region: str,
    zone: str,
    instance_type: str,
    tags: dict[str, str],
    key_name: str | None = None,
) -> None:
    """Register a running spot instance under a chosen id (one a killed dry-run controller left), in
    its zone, with its tags and, when it belongs to a run, that run's security group."""
    ec2 = client(sess, "ec2", region)
    image = images.choose_image(sess, region=region, instance_type=instance_type)
    params: dict[str, Any] = {}
    if TAG_RUN in tags:
        group = network.ensure_security_group(
            sess,
            region=region,
            run_id=tags[TAG_RUN],
            owner=tags.get(TAG_OWNER, "dry-run"),
            ssh_cidr=LOOPBACK_CIDR,
        )
        # On the zone's default subnet with a public address, as the launch asked (instances.py).
        vpc = network.default_vpc(ec2, region)
        params["NetworkInterfaces"] = [
            {
                "DeviceIndex": 0,
                "SubnetId": network.default_subnets(ec2, vpc)[zone],
                "Groups": [group.group_id],
                "AssociatePublicIpAddress": True,
                "DeleteOnTermination": True,
            }
        ]
    if key_name is not None:
        params["KeyName"] = key_name
    made = ec2.run_instances(
        ImageId=image.image_id,
        InstanceType=instance_type,
        MinCount=1,
        MaxCount=1,
        Placement={"AvailabilityZone": zone},
        InstanceMarketOptions={"MarketType": "spot"},
        **params,
    )["Instances"][0]
    rename_instance(region, made["InstanceId"], instance_id)
    tag_list = [{"Key": k, "Value": v} for k, v in tags.items()]
    ec2.create_tags(Resources=[instance_id], Tags=tag_list)


def endpoint_session(endpoint: str, config: Path) -> boto3.Session:
    """A boto3 session whose every client goes to `endpoint`, with moto's dummy credentials. The
    endpoint is set the documented way, a profile's `endpoint_url` in its own config file (`config`,
    written here), so no environment variable of this process changes and ~/.aws is not read."""
    config.write_text(f"[default]\nregion = us-east-1\nendpoint_url = {endpoint}\n")
    core = botocore.session.Session()
    core.set_config_variable("config_file", str(config))
    core.set_config_variable("credentials_file", os.devnull)
    core.set_config_variable("profile", "default")
    core.set_credentials(DUMMY_KEY, DUMMY_KEY)
    # moto has no Price List API (a request for it makes its server log a traceback): the dry-run's
    # answers GetProducts in the API's own format, with the catalog's on-demand price.
    core.register("before-call.pricing.GetProducts", _catalog_products)
    return boto3.Session(botocore_session=core, region_name="us-east-1")


def _catalog_products(params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
    """GetProducts as AWS answers it (one product: terms.OnDemand.*.priceDimensions.*), from the
    catalog's price, for the filters' instanceType; none for a type the catalog does not know."""
    wanted = {f["Field"]: f["Value"] for f in params.get("Filters", [])}
    itype = catalog.INSTANCE_TYPES.get(wanted.get("instanceType", ""))
    products = []
    if itype is not None:
        dim = {"unit": "Hrs", "pricePerUnit": {"USD": f"{itype.on_demand_usd_per_hour:.4f}"}}
        term = {"effectiveDate": f"{catalog.PRICES_AS_OF}T00:00:00Z", "priceDimensions": {"d": dim}}
        products.append(json.dumps({"product": {"attributes": wanted}, "terms": {"OnDemand": {"t": term}}}))
    meta = {"HTTPStatusCode": 200}
    return AWSResponse("https://pricing.dry-run.invalid/", 200, {}, None), {
        "PriceList": products,
        "FormatVersion": "aws_v1",
        "ResponseMetadata": meta,
    }


def deploy_stack(sess: boto3.Session, *, region: str, bucket: str, home: Path) -> stack.InfraOutputs:
    """`spotrain init` on moto: infra/spotrain.yaml deployed through CloudFormation, its outputs kept
    in `home`. moto deploys all of it but the TLS-only bucket policy, and says so twice (a warning and
    a log line): not news for a dry-run user, so both are silenced here."""
    log = logging.getLogger("moto")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Tried to parse AWS::S3::BucketPolicy")
            return stack.init(sess, region=region, bucket=bucket, home=home).outputs
    finally:
        log.setLevel(level)
