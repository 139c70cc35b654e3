"""Spot prices: the history per zone (boto3's paginator), the cheapest zone now, the price at any second.

The history comes back as `cost.PriceSample`s, which the store keeps so that a past second is always
priced at the price then in force, never at today's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone

import boto3

from spotrain import catalog
from spotrain.cloud import PriceTable, ZoneQuote
from spotrain.cloud.aws import client, pricing, region_of, session, translated
from spotrain.cost import PriceCurve, PriceSample, curves
from spotrain.errors import SpotrainError

LINUX = ("Linux/UNIX", "Linux/UNIX (Amazon VPC)")  # the VPC variant is the same price, older name
DAY_S = 86400.0


def history(
    sess: boto3.Session,
    *,
    region: str,
    instance_type: str,
    start: datetime,
    end: datetime | None = None,
    zones: Sequence[str] = (),
) -> list[PriceSample]:
    """Every Linux spot price change of `instance_type` in `region` from `start` on, oldest first.

    AWS also returns the last change before `start`, so the price in force at `start` is known.
    """
    ec2 = client(sess, "ec2", region)
    kwargs: dict = {
        "InstanceTypes": [instance_type],
        "ProductDescriptions": ["Linux/UNIX"],
        "StartTime": start,
        "EndTime": end or datetime.now(timezone.utc),
    }
    if zones:
        kwargs["Filters"] = [{"Name": "availability-zone", "Values": list(zones)}]
    seen: set[PriceSample] = set()
    for page in ec2.get_paginator("describe_spot_price_history").paginate(**kwargs):
        for row in page["SpotPriceHistory"]:
            if row.get("ProductDescription") not in LINUX or row["InstanceType"] != instance_type:
                continue
            seen.add(
                PriceSample(
                    zone=row["AvailabilityZone"],
                    instance_type=row["InstanceType"],
                    t=row["Timestamp"].timestamp(),
                    usd_per_hour=float(row["SpotPrice"]),
                )
            )
    return sorted(seen, key=lambda s: (s.t, s.zone))


def price_at(samples: Iterable[PriceSample], *, zone: str, t: float) -> float:
    """The price in force in `zone` at unix second `t` (a step function of the samples)."""
    return PriceCurve(s for s in samples if s.zone == zone).at(t)


def zone_quotes(
    samples: Iterable[PriceSample], *, now: float, on_demand: float, window_s: float = DAY_S
) -> list[ZoneQuote]:
    """Each zone's price now and its range over the window before now, cheapest first."""
    quotes = []
    for (zone, _), curve in curves(samples).items():
        try:
            price_now = curve.at(now)
        except LookupError:
            continue  # the zone's first price is in the future of `now`
        in_window = [curve.at(max(now - window_s, curve.times[0]))]
        in_window += [p for t, p in zip(curve.times, curve.prices, strict=True) if now - window_s < t <= now]
        quotes.append(ZoneQuote(zone, price_now, min(in_window), max(in_window), on_demand))
    return sorted(quotes, key=lambda q: (q.usd_per_hour, q.zone))


@translated("read spot prices")
def quote(
    *,
    instance_type: str,
    region: str | None = None,
    profile: str | None = None,
    sess: boto3.Session | None = None,
    now: datetime | None = None,
) -> PriceTable:
    """The `spotrain prices` table: each zone's spot price now, its discount, and its 24 h range."""
    itype = catalog.instance_type(instance_type)
    sess = sess or session(profile=profile)
    region = region_of(sess, region)
    now = now or datetime.now(timezone.utc)
    samples = history(sess, region=region, instance_type=itype.name, start=now - timedelta(days=1), end=now)
    od = pricing.on_demand(sess, region=region, instance_type=itype.name)
    zones = zone_quotes(samples, now=now.timestamp(), on_demand=od.usd_per_hour)
    if not zones:
        raise SpotrainError(
            f"{itype.name} has no spot price in region {region}: it is not offered there as spot",
            f"try another region, e.g. `spotrain prices --instance {itype.name} --region us-west-2`",
        )
    return PriceTable(
        instance_type=itype.name,
        region=region,
        now=now,
        on_demand_usd_per_hour=od.usd_per_hour,
        on_demand_as_of=od.label,
        zones=zones,
        on_demand_source=od.source,
    )
