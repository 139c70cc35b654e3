"""What moto 5 does not emulate, added to its backend (see ../shared/notes/moto.md).

Each helper patches moto's in-process model, so it reaches every boto3 client: in-process `mock_aws`
and a `ThreadedMotoServer` started by the same process alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from unittest import mock

from botocore.awsrequest import AWSResponse
from moto.core import DEFAULT_ACCOUNT_ID
from moto.core.responses import ActionResult
from moto.ec2.models import ec2_backends
from moto.ec2.responses.spot_instances import SpotInstances
from moto.servicequotas.models import ServiceQuotasBackend
from moto.ssm.models import Parameter, ssm_backends

ACCOUNT = DEFAULT_ACCOUNT_ID
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
P3 = "p3.16xlarge"


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


@contextmanager
def spot_prices(rows: list[Price]) -> Iterator[list[Price]]:
    """Serve `rows` from describe_spot_price_history as AWS would: the changes within
    [StartTime, EndTime] plus, for each zone, the last change before StartTime."""

    def describe(self: SpotInstances) -> ActionResult:
        types = self._get_param("InstanceTypes", [])
        filters = self._filters_from_querystring()
        start, end = _parse(self._get_param("StartTime")), _parse(self._get_param("EndTime"))
        zones = filters.get("availability-zone")
        mine = [
            r
            for r in rows
            if r.region == self.region
            and (not types or r.instance_type in types)
            and (not zones or r.zone in zones)
            and (end is None or r.t <= end)
        ]
        out = [r for r in mine if start is None or r.t >= start]
        if start is not None:
            for key in {(r.zone, r.instance_type) for r in mine}:
                before = [r for r in mine if (r.zone, r.instance_type) == key and r.t < start]
                if before:
                    out.append(max(before, key=lambda r: r.t))
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


def add_dlami(
    region: str,
    *,
    name: str,
    ssm_name: str | None = None,
    created: datetime | None = None,
) -> str:
    """Register an amazon-owned image called `name`; publish its id at `ssm_name` if given."""
    backend = ec2_backends[ACCOUNT][region]
    ami = backend.register_image(name=name, description="Deep Learning AMI (test)")
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


def fail_zones(session: Any, failures: dict[str, str]) -> list[str]:
    """RunInstances in a zone named in `failures` fails with that error code, through botocore's
    event system: the real client builds, validates and serializes the call, then gets a 400.
    Returns the list of zones asked, in order."""
    asked: list[str] = []

    def before_call(params: dict[str, Any], **_: Any) -> Any:
        zone = params["body"].get("Placement.AvailabilityZone", "")
        asked.append(zone)
        if zone not in failures:
            return None
        code = failures[zone]
        error = {"Code": code, "Message": f"{code}: no capacity in {zone} (injected)"}
        response = AWSResponse("https://ec2.invalid/", 400, {}, None)
        return response, {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 400}}

    session.events.register("before-call.ec2.RunInstances", before_call)
    return asked


def interrupt(region: str, instance_id: str) -> None:
    """End an instance as AWS ends a reclaimed spot instance (moto has no interruption API)."""
    from moto.ec2.models.instances import StateReason

    inst = ec2_backends[ACCOUNT][region].get_instance(instance_id)
    inst.terminate()
    inst.state_reason = StateReason(
        "Server.SpotInstanceTermination: Spot instance termination", "Server.SpotInstanceTermination"
    )


def history(region: str = "us-east-1", instance_type: str = P3) -> list[Price]:
    """A seeded day of prices: 1a is cheapest now, 1b was cheapest until an hour ago, 1c is flat."""
    h = timedelta(hours=1)
    z = f"{region}a", f"{region}b", f"{region}c"
    return [
        Price(region, z[0], instance_type, NOW - 30 * h, 9.00),  # before the 24 h window
        Price(region, z[0], instance_type, NOW - 10 * h, 8.10),
        Price(region, z[0], instance_type, NOW - 2 * h, 7.34),
        Price(region, z[1], instance_type, NOW - 26 * h, 6.50),
        Price(region, z[1], instance_type, NOW - 1 * h, 11.00),
        Price(region, z[2], instance_type, NOW - 48 * h, 9.50),
    ]
