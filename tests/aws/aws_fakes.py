"""What moto 5 does not emulate, added to its backend (see ../shared/notes/moto.md).

The fakes the dry-run cloud needs too live in spotrain/cloud/local/moto_patches.py (one copy); this module
adds the tests' own: a fixed clock, a hand-made day of prices, and injected capacity errors.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from botocore.awsrequest import AWSResponse

from spotrain.cloud.local.moto_patches import ACCOUNT, Price, add_dlami, interrupt, quotas, spot_prices

__all__ = [
    "ACCOUNT",
    "NOW",
    "P3",
    "Price",
    "add_dlami",
    "fail_zones",
    "history",
    "interrupt",
    "quotas",
    "spot_prices",
]

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
P3 = "p3.16xlarge"


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
