"""A detached run's cost is cost.py's rules summed over its ledger: the ledger the supervisor wrote (two
attempts: interrupted, then finished), priced by `detached.ledger_cost`, equals the rules' sum by hand
and the supervisor's own budget view; an attempt reclaimed without a final record ends at its last
heartbeat, and its row says so."""

from __future__ import annotations

import math

import pytest

from spotrain import detached
from spotrain.onboard.ledger import AttemptRecord, Ledger, RunSettings, spent_usd

from .conftest import World


def by_hand(rec: AttemptRecord, extra: float, end: float) -> float:
    """Per second, 60 s minimum; EC2 ending it in its first hour makes its spot $0; volumes always."""
    billed = max(60, math.ceil(end - rec.start))
    free = rec.exit_code in (75, None) and end - rec.start < 3600
    return (0.0 if free else rec.usd_per_hour * billed / 3600) + extra * billed / 3600


def test_the_cost_of_two_attempts_is_the_rules_sum_over_the_ledger(world: World) -> None:
    world.write_settings("interrupted", extra_usd_per_hour=0.05)
    assert world.boot().returncode == 75
    settings = world.write_settings("done", extra_usd_per_hour=0.05)
    assert world.boot().returncode == 0
    ledger = world.ledger()
    assert len(ledger.attempts) == 2
    bill = detached.ledger_cost(ledger, settings)
    expected = sum(by_hand(a, 0.05, a.ended_at) for a in ledger.attempts)
    assert bill.total_usd == pytest.approx(expected, rel=1e-9)
    assert [c.free_hour for c in bill.attempts] == [True, False]  # EC2 reclaimed the first
    # a finished minute at the price in force in 1a when it started
    assert bill.attempts[1].spot_usd == pytest.approx(ledger.attempts[1].usd_per_hour * 60 / 3600)
    assert ledger.attempts[1].usd_per_hour == world.price_in_force("us-east-1a")
    assert bill.total_usd == pytest.approx(spent_usd(ledger.attempts, extra_usd_per_hour=0.05, now=0))


def test_an_attempt_gone_without_an_end_is_billed_to_its_last_heartbeat() -> None:
    gone = AttemptRecord(1, "i-1", "g4dn.xlarge", "us-east-1a", "spot", 1000.0, 0.5, heartbeat=4600.0 + 1000)
    live = AttemptRecord(2, "i-2", "g4dn.xlarge", "us-east-1b", "spot", 6000.0, 0.4, heartbeat=6100.0)
    ledger = Ledger((gone, live))
    rows = detached.attempt_rows(ledger, live=2, now=6200.0)
    assert [r.ended_at_heartbeat for r in rows] == [True, False]
    assert rows[0].end == 5600.0 and "last heartbeat" in rows[0].reason
    assert rows[1].live and rows[1].end == 6200.0
    settings = RunSettings("r", "b", "us-east-1", "spotrain-r", "g4dn.xlarge", [], {}, extra_usd_per_hour=0.0)
    bill = detached.ledger_cost(ledger, settings, live=2, now=6200.0)
    # The first lived past its free hour (reclaimed after 4,600 s): billed; the live one to now.
    assert [c.billed_s for c in bill.attempts] == [4600, 200]
    assert bill.total_usd == pytest.approx(0.5 * 4600 / 3600 + 0.4 * 200 / 3600)
