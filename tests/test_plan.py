"""The plan's pure parts: the zone order every attempt follows, and the checkpoint interval's bounds."""

from __future__ import annotations

import pytest

from spotrain import plan
from spotrain.cloud import ZoneQuote
from spotrain.config import CHECKPOINT_BOUNDS_S, RunSpec
from spotrain.errors import SpotrainError

P3 = "p3.16xlarge"


def quotes(**prices: float) -> list[ZoneQuote]:
    return [ZoneQuote(zone, usd, usd, usd, 24.0) for zone, usd in prices.items()]


# us-east-1: 1b cheapest, then 1a, then 1c; us-west-2: 2c cheapest, then 2a; eu-north-1: no spot price
QUOTES = {
    "us-east-1": quotes(**{"us-east-1a": 8.0, "us-east-1b": 7.0, "us-east-1c": 9.0}),
    "us-west-2": quotes(**{"us-west-2a": 6.5, "us-west-2c": 6.0}),
}


def tried(order: plan.ZoneOrder) -> list[str]:
    return [c.zone for c in order.candidates]


def test_regions_in_the_runs_order_cheapest_first_within_each() -> None:
    order = plan.order_zones(QUOTES, instance_type=P3)
    assert tried(order) == ["us-east-1b", "us-east-1a", "us-east-1c", "us-west-2c", "us-west-2a"]
    assert [c.region for c in order.candidates][-1] == "us-west-2" and order.skipped == ()


def test_zone_allows_only_the_zones_given_in_every_region() -> None:
    order = plan.order_zones(QUOTES, instance_type=P3, zones=["us-east-1c", "us-west-2a"])
    assert tried(order) == ["us-east-1c", "us-west-2a"] and order.skipped == ()


def test_the_zone_that_just_interrupted_the_run_goes_last() -> None:
    order = plan.order_zones(QUOTES, instance_type=P3, demote=["us-east-1b"])
    assert tried(order) == ["us-east-1a", "us-east-1c", "us-west-2c", "us-west-2a", "us-east-1b"]


def test_the_demoted_zone_is_still_the_only_one_under_zone() -> None:
    order = plan.order_zones(QUOTES, instance_type=P3, zones=["us-east-1b"], demote=["us-east-1b"])
    assert tried(order) == ["us-east-1b"]


def test_max_price_leaves_out_the_dearer_zones_saying_why() -> None:
    order = plan.order_zones(QUOTES, instance_type=P3, max_price=7.0)
    assert tried(order) == ["us-east-1b", "us-west-2c", "us-west-2a"]
    assert [(f.zone, f.code) for f in order.skipped] == [
        ("us-east-1a", "MaxPrice"),
        ("us-east-1c", "MaxPrice"),
    ]


def test_a_region_without_a_spot_price_is_skipped_saying_why() -> None:
    order = plan.order_zones({"eu-north-1": [], **QUOTES}, instance_type=P3)
    assert tried(order)[0] == "us-east-1b"
    assert [(f.region, f.zone, f.code) for f in order.skipped] == [("eu-north-1", "*", "NotOffered")]


@pytest.mark.parametrize(
    ("spec", "found", "phrase"),
    [
        (
            {"max_price": 1.0},
            QUOTES,
            "--max-price $1/h is below every allowed zone's spot price: the cheapest is us-west-2c",
        ),
        ({"zones": ["us-east-1d"]}, QUOTES, "no spot price in --zone us-east-1d of us-east-1, us-west-2"),
        ({}, {"eu-north-1": []}, "no spot price in eu-north-1: it is not offered there as spot"),
    ],
    ids=["max-price", "zone", "not-offered"],
)
def test_an_empty_order_is_refused_naming_the_limit(spec, found, phrase) -> None:
    run = RunSpec(recipe="digits", instance=P3, regions=list(found), **spec)
    order = plan.order_zones(found, instance_type=P3, zones=run.zones, max_price=run.max_price)
    with pytest.raises(SpotrainError) as err:
        plan.refuse_empty(order, found, run)
    assert phrase in err.value.message


@pytest.mark.parametrize(
    ("cost_s", "mtbi_s", "expected"),
    [
        (0.0, 7200.0, CHECKPOINT_BOUNDS_S[0]),
        (5.0, 3600.0, 189.7366596),
        (1000.0, 1e6, CHECKPOINT_BOUNDS_S[1]),
    ],
    ids=["floor", "young", "ceiling"],
)
def test_youngs_interval_is_held_to_the_one_pair_of_bounds(cost_s, mtbi_s, expected) -> None:
    assert plan.young_interval(cost_s, mtbi_s) == pytest.approx(expected)


def test_the_checkpoint_interval_uses_what_was_measured_else_the_defaults() -> None:
    default = plan.checkpoint_plan(measured_cost_s=None, interruptions=0, instance_hours=0.0)
    assert (default.checkpoint_cost_s, default.mtbi_s) == (
        plan.DEFAULT_CHECKPOINT_COST_S,
        plan.DEFAULT_MTBI_S,
    )
    seen = plan.checkpoint_plan(measured_cost_s=2.0, interruptions=4, instance_hours=2.0)
    assert (seen.checkpoint_cost_s, seen.mtbi_s) == (2.0, 1800.0) and "measured" in seen.basis
    assert seen.seconds == pytest.approx(plan.young_interval(2.0, 1800.0))


def test_the_bounds_are_what_checkpoint_every_accepts() -> None:
    low, high = CHECKPOINT_BOUNDS_S
    assert RunSpec(recipe="digits", checkpoint_every=low).checkpoint_every == low
    assert RunSpec(recipe="digits", checkpoint_every=high).checkpoint_every == high
    for outside in (low - 1, high + 1):
        with pytest.raises(ValueError):
            RunSpec(recipe="digits", checkpoint_every=outside)
