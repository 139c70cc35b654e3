"""Spot prices from a seeded history: cheapest zone, the 24 h range, the price at a past second."""

from __future__ import annotations

from datetime import timedelta

import pytest

from spotrain.cloud.aws import prices
from spotrain.errors import SpotrainError

from .aws_fakes import NOW, P3, history, spot_prices


def test_cheapest_zone_now_and_the_24h_range(aws) -> None:
    with spot_prices(history()):
        table = prices.quote(instance_type=P3, region="us-east-1", sess=aws, now=NOW)
    assert [q.zone for q in table.zones] == ["us-east-1a", "us-east-1c", "us-east-1b"]
    a, c, b = table.zones
    # 1a: in force at the window's start was 9.00 (set 30 h ago), then 8.10, now 7.34
    assert (a.usd_per_hour, a.low_24h, a.high_24h) == (7.34, 7.34, 9.00)
    assert (b.usd_per_hour, b.low_24h, b.high_24h) == (11.00, 6.50, 11.00)
    assert (c.usd_per_hour, c.low_24h, c.high_24h) == (9.50, 9.50, 9.50)
    assert table.on_demand_usd_per_hour == 24.48
    assert a.discount == pytest.approx(1 - 7.34 / 24.48)


def test_price_in_force_at_a_past_second(aws) -> None:
    with spot_prices(history()):
        samples = prices.history(
            aws, region="us-east-1", instance_type=P3, start=NOW - timedelta(days=3), end=NOW
        )
    t = (NOW - timedelta(hours=5)).timestamp()
    assert prices.price_at(samples, zone="us-east-1a", t=t) == 8.10
    assert prices.price_at(samples, zone="us-east-1b", t=t) == 6.50
    assert prices.price_at(samples, zone="us-east-1b", t=NOW.timestamp()) == 11.00
    with pytest.raises(LookupError):  # before the first known price there is no price
        prices.price_at(samples, zone="us-east-1a", t=(NOW - timedelta(days=2)).timestamp())


def test_region_without_the_type(aws) -> None:
    with spot_prices(history()), pytest.raises(SpotrainError) as err:
        prices.quote(instance_type=P3, region="ap-south-2", sess=aws, now=NOW)
    assert "ap-south-2" in err.value.message and P3 in err.value.message


def test_unknown_region_and_type_fail_before_any_call(aws) -> None:
    with pytest.raises(SpotrainError, match="'us-east-9'.*us-east-1"):
        prices.quote(instance_type=P3, region="us-east-9", sess=aws)
    with pytest.raises(SpotrainError, match="'p3.16xl'"):
        prices.quote(instance_type="p3.16xl", region="us-east-1", sess=aws)
