"""The seeded spot price history: several zones per region, prices that move within a day and across
the week, a realistic share of on-demand, the same history for the same seed, and `prices.quote` on it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from spotrain import catalog
from spotrain.cloud.aws import prices
from spotrain.cloud.local import REGIONS, LocalCloud
from spotrain.cloud.local.moto_patches import seeded_history

P3 = "p3.16xlarge"


def test_history_has_moving_prices_in_several_zones(cloud: LocalCloud) -> None:
    now = datetime.now(timezone.utc)
    on_demand = catalog.instance_type(P3).on_demand_usd_per_hour
    for region, zones in REGIONS.items():
        week = prices.history(cloud.session(), region=region, instance_type=P3, start=now - timedelta(days=7))
        assert {s.zone for s in week} == set(zones)
        assert week[0].t <= (now - timedelta(days=7)).timestamp() + 3 * 3600
        assert week[-1].t >= (now - timedelta(hours=4)).timestamp()
        assert all(0.25 * on_demand - 0.01 <= s.usd_per_hour <= 0.40 * on_demand + 0.01 for s in week)
        for zone in zones:
            day = [
                s.usd_per_hour
                for s in week
                if s.zone == zone and s.t >= (now - timedelta(days=1)).timestamp()
            ]
            assert len(day) >= 6 and max(day) - min(day) > 0.02 * on_demand, (zone, day)
    cheapest = set()
    for hours_ago in range(0, 24 * 7, 6):
        at = (now - timedelta(hours=hours_ago)).timestamp()
        quotes = prices.zone_quotes(
            prices.history(
                cloud.session(), region="us-east-1", instance_type=P3, start=now - timedelta(days=8)
            ),
            now=at,
            on_demand=on_demand,
        )
        cheapest.add(quotes[0].zone)
    assert len(cheapest) >= 2, "the cheapest zone never changes over the week"


def test_quote_works_on_the_seeded_history(cloud: LocalCloud) -> None:
    for itype in (P3, "g4dn.xlarge", "g5.xlarge"):
        table = prices.quote(instance_type=itype, region="us-east-1", sess=cloud.session())
        assert len(table.zones) == len(REGIONS["us-east-1"])
        best = table.zones[0]
        assert best.low_24h <= best.usd_per_hour <= best.high_24h
        assert 0.55 <= best.discount <= 0.76
    west = prices.quote(instance_type=P3, region="us-west-2", sess=cloud.session())
    assert [q.zone[:-1] for q in west.zones] == ["us-west-2"] * 3


def test_same_seed_same_past_other_seed_other_prices() -> None:
    now = datetime.now(timezone.utc)
    kw = {"regions": {"us-east-1": ["us-east-1a"]}, "instance_types": [P3], "now": now}
    a, b = seeded_history(**kw, seed=0), seeded_history(**kw, seed=0)
    later = seeded_history(**{**kw, "now": now + timedelta(hours=5)}, seed=0)
    assert a == b
    assert [p for p in a if p.t >= later[0].t] == [
        p for p in later if p.t <= now
    ]  # a restarted controller serves the same past
    assert [p.usd for p in seeded_history(**kw, seed=1)] != [p.usd for p in a]
