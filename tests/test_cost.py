"""Cost: hand-computed cases to the cent, properties of the per-second price integral, and a stored
run's bill and budget projection."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spotrain.cost import (
    Attempt,
    EvalPoint,
    PriceCurve,
    PriceSample,
    S3Usage,
    attempt_cost,
    billed_seconds,
    run_bill,
    run_cost,
    spent_and_projected,
)
from spotrain.errors import SpotrainError
from spotrain.store import Store

T = "p3.16xlarge"


def sample(zone: str, t: float, usd: float) -> PriceSample:
    return PriceSample(zone=zone, instance_type=T, t=t, usd_per_hour=usd)


def cents(x: float) -> float:
    return round(x + 1e-9, 2)


def test_price_change_mid_attempt() -> None:
    # $1/h until t=1800, then $2/h; the attempt runs 900..3600: 900 s at $1 + 1800 s at $2.
    prices = [sample("a", 0, 1.0), sample("a", 1800, 2.0)]
    cost = run_cost([Attempt("1", T, "a", 900, 3600)], prices)
    assert cents(cost.spot_usd) == 1.25
    assert cost.attempts[0].billed_s == 2700


def test_thirty_seconds_is_billed_sixty() -> None:
    cost = run_cost([Attempt("1", T, "a", 100, 130)], [sample("a", 0, 3.60)])
    assert cost.attempts[0].billed_s == 60 and cents(cost.spot_usd) == 0.06
    assert cents(cost.on_demand_usd) == cents(24.48 / 60)  # one on-demand minute


def test_a_price_never_comes_from_after_the_second_it_prices() -> None:
    # The price that starts at t=200 must not price an attempt at t=100..150 (billed to 160).
    cost = run_cost([Attempt("1", T, "a", 100, 150)], [sample("a", 0, 3.60), sample("a", 200, 360.0)])
    assert cents(cost.spot_usd) == 0.06
    with pytest.raises(SpotrainError, match="no spot price"):
        run_cost([Attempt("1", T, "a", 100, 150)], [sample("a", 101, 1.0)])


def test_two_attempts_in_different_zones_with_ebs_s3_and_target() -> None:
    # us-east-1c's price must not leak into the others
    prices = [sample("us-east-1a", 0, 0.90), sample("us-east-1b", 0, 1.80), sample("us-east-1c", 0, 9.0)]
    attempts = [
        Attempt("1", T, "us-east-1a", 0, 3600, ebs_gb=1000),  # 1 h at $0.90; 1000 GB for 1 h
        Attempt("2", T, "us-east-1b", 4000, 5800, ebs_gb=1000),  # 0.5 h at $1.80
    ]
    s3 = S3Usage(gb_stored=100, seconds=30 * 86400, put_requests=10_000, get_requests=100_000)
    evals = [EvalPoint(3000, 0.90), EvalPoint(5000, 0.94), EvalPoint(5500, 0.95)]
    cost = run_cost(attempts, prices, s3=s3, evals=evals, target=0.93)
    assert [cents(a.spot_usd) for a in cost.attempts] == [0.90, 0.90]
    # EBS: 1000 GB x $0.08/GB-month x 5400 s / 2,592,000 s = $0.1667
    assert cents(cost.ebs_usd) == 0.17
    # S3: 100 GB-month x $0.023 + 10k PUT x $0.005/1k + 100k GET x $0.0004/1k = 2.30 + 0.05 + 0.04
    assert cents(cost.s3_usd) == 2.39
    assert cents(cost.total_usd) == cents(1.80 + 0.1667 + 2.39)
    # On demand: 5400 instance-seconds x $24.48/h = $36.72, plus the same EBS and S3
    assert cents(cost.on_demand_usd) == cents(36.72 + 0.1667 + 2.39)
    assert cost.savings_usd > 34 and 0.8 < cost.savings_fraction < 1
    assert cost.gpu_hours == pytest.approx(8 * 1.5)
    # Target 0.93 first reached at t=5000: attempt 1 whole, attempt 2 for 1000 s at $1.80/h, EBS pro rata
    assert cost.to_target is not None and cost.to_target.seconds == 5000 and cost.to_target.value == 0.94
    ebs_to_target = 1000 * 0.08 * 4600 / 2_592_000
    assert cents(cost.to_target.usd) == cents(0.90 + 0.50 + ebs_to_target)


def test_target_never_reached() -> None:
    cost = run_cost(
        [Attempt("1", T, "a", 0, 60)], [sample("a", 0, 1)], evals=[EvalPoint(10, 0.5)], target=0.9
    )
    assert cost.to_target is None


def test_attempt_that_ends_before_it_starts_is_a_bug() -> None:
    with pytest.raises(ValueError):
        billed_seconds(10, 5)


# -- properties -------------------------------------------------------------------------------

prices_st = st.floats(min_value=0.01, max_value=100, allow_nan=False)
starts = st.integers(min_value=0, max_value=10**6)
durations = st.integers(min_value=0, max_value=10**6)


@given(price=prices_st, start=starts, duration=durations)
def test_flat_price_is_price_times_billed_seconds(price: float, start: int, duration: int) -> None:
    c = attempt_cost(Attempt("x", T, "a", start, start + duration), PriceCurve([sample("a", 0, price)]))
    assert c.spot_usd == pytest.approx(price * max(60, duration) / 3600, rel=1e-9)


@given(
    steps=st.lists(st.tuples(st.integers(0, 10**5), prices_st), min_size=1, max_size=20),
    start=st.integers(0, 10**5),
    d1=durations,
    extra=st.floats(min_value=0, max_value=10**5),
)
def test_cost_never_decreases_with_a_longer_attempt(steps, start, d1, extra) -> None:
    curve = PriceCurve([sample("a", 0, 1.0)] + [sample("a", t, p) for t, p in steps])
    short = attempt_cost(Attempt("x", T, "a", start, start + d1), curve)
    long = attempt_cost(Attempt("x", T, "a", start, start + d1 + extra), curve)
    assert long.spot_usd >= short.spot_usd - 1e-12
    assert long.ebs_usd >= short.ebs_usd and long.on_demand_usd >= short.on_demand_usd


@given(
    p1=prices_st,
    p2=prices_st,
    start=st.integers(0, 10**5),
    before=st.integers(60, 10**5),
    after=st.integers(60, 10**5),
)
def test_splitting_at_a_price_change_keeps_the_total(p1, p2, start, before, after) -> None:
    change = start + before
    curve = PriceCurve([sample("a", 0, p1), sample("a", change, p2)])
    whole = run_cost(
        [Attempt("w", T, "a", start, change + after)], [sample("a", 0, p1), sample("a", change, p2)]
    )
    parts = run_cost(
        [Attempt("1", T, "a", start, change), Attempt("2", T, "a", change, change + after)],
        [sample("a", 0, p1), sample("a", change, p2)],
    )
    assert parts.spot_usd == pytest.approx(whole.spot_usd, rel=1e-9)
    assert whole.spot_usd == pytest.approx(curve.integral_usd(start, change + after), rel=1e-9)


# -- the run's bill and the budget, from a store ----------------------------------------------

G4 = "g4dn.xlarge"  # one GPU, $0.526/h on demand


@pytest.fixture
def store(tmp_path) -> Store:
    with Store.open(tmp_path) as s:
        yield s


def digits_run(store: Store, *lives: tuple[float, float], usd_per_hour: float = 0.36) -> str:
    """A digits run whose attempts ran (start, end) each, in us-east-1a at a flat price from t=0."""
    run_id = store.new_run_id("digits")
    store.create_run(run_id, {"recipe": "digits", "instance": G4}, dry_run=True)
    store.add_price_samples("us-east-1", [PriceSample("us-east-1a", G4, 0, usd_per_hour)])
    for number, (start, end) in enumerate(lives, start=1):
        store.add_attempt(
            run_id,
            instance_id=f"i-{number}",
            region="us-east-1",
            zone="us-east-1a",
            instance_type=G4,
            spot_usd_per_hour=usd_per_hour,
            requested_at=start,
        )
        store.update_attempt(run_id, number, started_at=start, training_started_at=start, ended_at=end)
    return run_id


def test_the_bill_of_a_stored_run_is_the_rules_applied_to_it(store) -> None:
    run_id = digits_run(store, (1000, 1600), (2000, 2030))
    store.add_event(run_id, "eval", {"top1": 0.99}, t=2010, source="trainer")
    bill = run_bill(store, run_id)
    # 600 s + 30 s billed as 60 s at $0.36/h; 120 GB root volume each
    assert [a.billed_s for a in bill.cost.attempts] == [600, 60]
    assert bill.cost.spot_usd == pytest.approx(0.36 * 660 / 3600, rel=1e-12)
    assert bill.usage.wall_s == 1030 and bill.usage.origin == 1000
    assert bill.cost.to_target is not None and bill.cost.to_target.seconds == 1010
    assert bill.spent_at(2010) == pytest.approx(bill.cost.to_target.usd, rel=1e-12)
    assert bill.spent_at(999) == 0


def test_a_live_attempt_without_stored_history_is_priced_at_its_quote(store) -> None:
    run_id = digits_run(store, usd_per_hour=0.36)
    store.add_attempt(
        run_id,
        instance_id="i-1",
        region="us-east-1",
        zone="us-east-1b",  # no sample stored for this zone
        instance_type=G4,
        spot_usd_per_hour=0.72,
        requested_at=5000,
    )
    store.update_attempt(run_id, 1, started_at=5000)
    bill = run_bill(store, run_id, now=8600)
    assert bill.cost.attempts[0].billed_s == 3600 and bill.cost.spot_usd == pytest.approx(0.72)


def test_spent_and_projected_from_the_rate_and_the_share_of_the_schedule_done(store) -> None:
    run_id = digits_run(store, (1000, 4600), usd_per_hour=0.36)
    assert spent_and_projected(store, run_id) == (pytest.approx(0.36 + EBS_HOUR), 0.0)  # no steps yet
    # the billed minimum of a next instance at the last attempt's rate
    assert spent_and_projected(store, run_id, next_attempt=True)[1] == pytest.approx(0.36 / 60)
    store.add_event(run_id, "start", {"config": {"epochs": 4}}, attempt=1, t=1010, source="trainer")
    store.add_event(run_id, "step", {"epoch": 1.0}, attempt=1, t=4500, source="trainer")
    # a quarter done in 3600 s of training: three more hours at $0.36/h
    assert spent_and_projected(store, run_id)[1] == pytest.approx(3 * 0.36)


def test_spent_and_projected_of_a_run_with_no_attempt_is_nothing(store) -> None:
    assert spent_and_projected(store, digits_run(store), next_attempt=True) == (0.0, 0.0)


EBS_HOUR = 120 * 0.08 * 3600 / (30 * 86400)  # digits' 120 GB root volume for an hour


@pytest.mark.parametrize(
    ("minutes", "by_ec2", "free"), [(30, True, True), (59, True, True), (61, True, False), (30, False, False)]
)
def test_ec2_interrupting_in_the_first_hour_charges_no_spot(minutes: int, by_ec2: bool, free: bool) -> None:
    # "Billing for interrupted Spot Instances": EC2 interrupting in the first hour charges nothing for
    # the instance; after the first hour, or ended by its owner, each second is billed. EBS always is.
    a = Attempt("r-1", T, "us-east-1a", 0.0, minutes * 60.0, 100, reclaimed_by_ec2=by_ec2)
    ac = attempt_cost(a, PriceCurve([sample("us-east-1a", 0.0, 7.0)]))
    assert ac.free_hour is free and ac.ebs_usd > 0
    assert ac.spot_usd == (0.0 if free else pytest.approx(7.0 * minutes / 60))


def test_provisioned_iops_and_throughput_are_billed_with_the_volume() -> None:
    """The imagenet plan's gp3 (5,225 IOPS, 549 MiB/s on a p3.16xlarge) costs more than its GB: the
    2,225 IOPS and 424 MiB/s over the baseline, by the billed second, as the plan showed it."""
    from spotrain import volumes

    start, curve = 1_000_000.0, PriceCurve([sample("a", 0, 1.0)])
    plain = attempt_cost(Attempt("x", T, "a", start, start + 3600, 400), curve)
    extra = volumes.volume_usd_per_hour(0, 5225, 549)
    fast = attempt_cost(
        Attempt("x", T, "a", start, start + 3600, 400, ebs_provisioned_usd_per_hour=extra), curve
    )
    assert extra == pytest.approx((2225 * 0.005 + 424 * 0.04) / 730)
    assert fast.ebs_usd - plain.ebs_usd == pytest.approx(extra)  # one billed hour
    assert fast.spot_usd == plain.spot_usd
