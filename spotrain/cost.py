"""What a run cost: first the rules, pure functions of its attempts and the spot price history; then a
run's bill (`run_bill`), the one place a run is priced, for `cost`, `status`, the budget and the report.
The rules (ARCHITECTURE.md, Cost): per second with a 60 s minimum at the spot price in force in the
attempt's zone at each second (never "now"'s price for a past second), the first hour free when EC2
interrupted it, EBS by the second, S3 storage and requests; on demand: the same seconds at the on-demand
price; time and $ to target stop at the first eval that reached it (DAWNBench). The bill gathers from a
Store it is given (`run_usage`, never failing on a missing price) and prices that (`price`).
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from spotrain import catalog, volumes
from spotrain.errors import SpotrainError
from spotrain.onboard.billing import MIN_BILLED_S, billed_seconds, first_hour_free  # noqa: F401 (re-exported)
from spotrain.store_nodes import node_lives

MONTH_S = 30 * 86400  # AWS prorates GB-month prices over a 30-day month in its examples
EBS_GP3_USD_PER_GB_MONTH = 0.08  # us-east-1, baseline 3,000 IOPS and 125 MB/s included
S3_USD_PER_GB_MONTH = 0.023  # S3 Standard, first 50 TB, us-east-1
S3_USD_PER_PUT = 0.005 / 1000  # PUT, COPY, POST, LIST
S3_USD_PER_GET = 0.0004 / 1000  # GET and all other requests


@dataclass(frozen=True)
class PriceSample:
    """One row of the spot price history: from `t` on (unix s), `zone` charged this much an hour."""

    zone: str
    instance_type: str
    t: float
    usd_per_hour: float


@dataclass(frozen=True)
class Attempt:
    """One instance's life, as the cost needs it."""

    attempt_id: str
    instance_type: str
    zone: str
    start: float  # unix s, when billing started (the instance entered `running`)
    end: float  # unix s, when it ended (or now, for a running attempt)
    ebs_gb: float = 0.0  # every volume it had (root + data), gp3
    ebs_usd_per_gb_month: float = EBS_GP3_USD_PER_GB_MONTH
    # gp3 Iops and Throughput provisioned over the baseline (volumes.py), billed by the second with the
    # volume (Amazon EBS pricing: per IOPS-month and per MiB/s-month)
    ebs_provisioned_usd_per_hour: float = 0.0
    reclaimed_by_ec2: bool = False  # EC2 interrupted and ended it (not its owner): its first hour is free
    node: int | None = None  # its rank in a multi-node attempt (each node billed alone); None: one node


@dataclass(frozen=True)
class S3Usage:
    gb_stored: float = 0.0  # the run's prefix, averaged over `seconds`
    seconds: float = 0.0
    put_requests: int = 0
    get_requests: int = 0


@dataclass(frozen=True)
class EvalPoint:
    t: float  # unix s of the eval event
    value: float  # the metric the target applies to (top1 or top5)


@dataclass(frozen=True)
class AttemptCost:
    attempt_id: str
    zone: str
    billed_s: int
    spot_usd: float
    ebs_usd: float
    on_demand_usd: float
    free_hour: bool = False  # interrupted by EC2 in its first hour: no spot charge (the EBS is billed)
    node: int | None = None  # the node's rank in a multi-node attempt; None: a single-node attempt


@dataclass(frozen=True)
class TargetCost:
    """Wall-clock from the first attempt's start to the first eval at or above the target, and its $."""

    seconds: float
    usd: float
    value: float


@dataclass(frozen=True)
class RunCost:
    attempts: list[AttemptCost]
    s3_usd: float
    gpu_hours: float
    to_target: TargetCost | None = None
    spot_usd: float = field(init=False)
    ebs_usd: float = field(init=False)
    total_usd: float = field(init=False)
    on_demand_usd: float = field(init=False)  # the same instance-seconds on demand, same EBS and S3

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "spot_usd", sum(a.spot_usd for a in self.attempts))
        set_(self, "ebs_usd", sum(a.ebs_usd for a in self.attempts))
        set_(self, "total_usd", self.spot_usd + self.ebs_usd + self.s3_usd)
        od = sum(a.on_demand_usd for a in self.attempts)
        set_(self, "on_demand_usd", od + self.ebs_usd + self.s3_usd)

    @property
    def savings_usd(self) -> float:
        return self.on_demand_usd - self.total_usd

    @property
    def savings_fraction(self) -> float:
        return self.savings_usd / self.on_demand_usd if self.on_demand_usd else 0.0


class PriceCurve:
    """The spot price of one type in one zone as a step function of time."""

    def __init__(self, samples: Iterable[PriceSample]) -> None:
        rows = sorted((s.t, s.usd_per_hour) for s in samples)
        self.times = [t for t, _ in rows]
        self.prices = [p for _, p in rows]

    def at(self, t: float) -> float:
        """The price in force at second `t`: the newest sample at or before it."""
        i = bisect.bisect_right(self.times, t) - 1
        if i < 0:
            raise LookupError(t)
        return self.prices[i]

    def integral_usd(self, start: float, end: float) -> float:
        """$ for running from `start` to `end` (seconds) at the price in force each second."""
        if end <= start:
            return 0.0
        total, t = 0.0, start
        i = bisect.bisect_right(self.times, start) - 1
        if i < 0:
            raise LookupError(start)
        while t < end:
            nxt = self.times[i + 1] if i + 1 < len(self.times) else math.inf
            seg_end = min(end, nxt)
            total += self.prices[i] * (seg_end - t) / 3600.0
            t, i = seg_end, i + 1
        return total


def curves(samples: Iterable[PriceSample]) -> dict[tuple[str, str], PriceCurve]:
    """Samples grouped into one curve per (zone, instance type)."""
    groups: dict[tuple[str, str], list[PriceSample]] = {}
    for s in samples:
        groups.setdefault((s.zone, s.instance_type), []).append(s)
    return {k: PriceCurve(v) for k, v in groups.items()}


def attempt_cost(attempt: Attempt, curve: PriceCurve) -> AttemptCost:
    """One attempt's spot, EBS and on-demand-equivalent dollars."""
    billed = billed_seconds(attempt.start, attempt.end)
    try:
        spot = curve.integral_usd(attempt.start, attempt.start + billed)
    except LookupError:
        raise SpotrainError(
            f"no spot price for {attempt.instance_type} in {attempt.zone} at or before the start of "
            f"attempt {attempt.attempt_id} (t={attempt.start:.0f})",
            "refresh the price history from before the attempt started (spotrain prices)",
        ) from None
    # "Billing for interrupted Spot Instances" (EC2 user guide): EC2 interrupting an instance in its
    # first hour charges nothing for it; after that, or ended by its owner, every second is billed.
    free = first_hour_free(reclaimed_by_ec2=attempt.reclaimed_by_ec2, start=attempt.start, end=attempt.end)
    od_rate = catalog.instance_type(attempt.instance_type).on_demand_usd_per_hour
    return AttemptCost(
        attempt_id=attempt.attempt_id,
        zone=attempt.zone,
        billed_s=billed,
        spot_usd=0.0 if free else spot,
        ebs_usd=attempt.ebs_gb * attempt.ebs_usd_per_gb_month * billed / MONTH_S
        + attempt.ebs_provisioned_usd_per_hour * billed / 3600.0,
        on_demand_usd=od_rate * billed / 3600.0,
        free_hour=free,
        node=attempt.node,
    )


def s3_cost(usage: S3Usage) -> float:
    storage = usage.gb_stored * S3_USD_PER_GB_MONTH * usage.seconds / MONTH_S
    return storage + usage.put_requests * S3_USD_PER_PUT + usage.get_requests * S3_USD_PER_GET


def first_reaching(evals: Iterable[EvalPoint], target: float) -> EvalPoint | None:
    """The earliest eval whose value is at or above `target`."""
    hits = [e for e in evals if e.value >= target]
    return min(hits, key=lambda e: e.t) if hits else None


def clip(attempts: Iterable[Attempt], until: float) -> list[Attempt]:
    """The attempts as they were at second `until`: later ones dropped, the one running cut short."""
    return [replace(a, end=min(a.end, until)) for a in attempts if a.start <= until]


Curves = dict[tuple[str, str], PriceCurve]


def _costs(attempts: Iterable[Attempt], by_key: Curves) -> list[AttemptCost]:
    empty = PriceCurve([])
    return [attempt_cost(a, by_key.get((a.zone, a.instance_type), empty)) for a in attempts]


def spent_by(attempts: Iterable[Attempt], by_key: Curves, until: float) -> float:
    """Spot + EBS dollars spent by second `until` (the rule for $ to target, at any second)."""
    return sum(c.spot_usd + c.ebs_usd for c in _costs(clip(attempts, until), by_key))


def run_cost(
    attempts: Sequence[Attempt],
    samples: Iterable[PriceSample],
    *,
    s3: S3Usage | None = None,
    evals: Iterable[EvalPoint] = (),
    target: float | None = None,
) -> RunCost:
    """The run's cost: each attempt at its zone's price history, EBS and S3, and $ to the target."""
    by_key = curves(samples)
    per_attempt = _costs(attempts, by_key)
    gpu_hours = sum(
        c.billed_s * catalog.instance_type(a.instance_type).gpus / 3600.0
        for a, c in zip(attempts, per_attempt, strict=True)
    )
    to_target = None
    hit = first_reaching(evals, target) if target is not None else None
    if hit is not None and attempts:
        to_target = TargetCost(
            seconds=hit.t - min(a.start for a in attempts),
            usd=spent_by(attempts, by_key, hit.t),
            value=hit.value,
        )
    return RunCost(per_attempt, s3_cost(s3) if s3 else 0.0, gpu_hours, to_target)


# ---------------------------------------------------------------------------------------------- bill
@dataclass(frozen=True)
class RunUsage:
    """What a run used, as the store has it: each attempt's life, the prices in force, evals and S3."""

    run_id: str
    records: tuple[Any, ...]  # the store's AttemptRecords, first first; one a node (store_nodes.node_lives)
    attempts: tuple[Attempt, ...]  # the same lives as the rules price them (a live one ends `now`)
    samples: tuple[PriceSample, ...]  # with a live attempt's quoted price where no history is stored
    evals: tuple[EvalPoint, ...]
    s3: S3Usage
    target: float | None
    target_metric: str
    origin: float  # unix s: the first instance's start (the zero of time to target)
    end: float  # unix s: the last attempt's end, or now
    wall_s: float  # from the first attempt's request to the last one's end (or now)

    @cached_property
    def curves(self) -> Curves:
        return curves(self.samples)


@dataclass(frozen=True)
class Bill:
    """A run priced: what it used and what that cost."""

    usage: RunUsage
    cost: RunCost

    @property
    def run_id(self) -> str:
        return self.usage.run_id

    def spent_at(self, t: float) -> float:
        """Spot + EBS dollars spent by second `t`, by the same prices as the bill."""
        return spent_by(self.usage.attempts, self.usage.curves, t)


def _s3_usage(checkpoints: list, wall_s: float, n_attempts: int) -> S3Usage:
    """S3 from the trainer's upload events: the kept checkpoints' bytes over the run, one PUT a file."""
    uploads = [e.data for e in checkpoints if e.data.get("where") == "s3"]
    if not uploads:
        return S3Usage()
    mean_bytes = sum(u.get("bytes", 0) for u in uploads) / len(uploads)
    kept = min(len(uploads), 3)
    return S3Usage(
        gb_stored=mean_bytes * kept / 1e9,
        seconds=wall_s,
        put_requests=4 * len(uploads),
        get_requests=4 * n_attempts,
    )


def _prices_in_force(store, a, start: float, end: float) -> list[PriceSample]:
    """The stored history of attempt `a`'s zone from `start` to `end`. A live attempt's history is stored
    when it ends; until then the price quoted when it was requested is the one in force at its start
    (never "now"'s price for a past second)."""
    found = store.price_samples(
        region=a.region, instance_type=a.instance_type, zones=[a.zone], start=start, end=end
    )
    if not any(p.t <= start for p in found) and a.spot_usd_per_hour:
        found.insert(0, PriceSample(a.zone, a.instance_type, a.requested_at, a.spot_usd_per_hour))
    return found


def run_usage(store, run_id: str, *, now: float | None = None, run=None) -> RunUsage:
    """What run `run_id` has used so far (all of it, once it has ended); prices nothing. `run`: its
    record when the caller has just read it (`status`, over every run), else read here."""
    now = now or time.time()
    run = run if run is not None else store.get_run(run_id)
    recipe = catalog.recipe(run.recipe)  # as stored: no pydantic for `status`
    records, gb = store.attempts(run_id), recipe.root_volume_gb
    plan = run.plan  # the data volume's Iops and Throughput every attempt launched with
    provisioned = volumes.volume_usd_per_hour(0, plan.data_iops, plan.data_mib_s) if plan is not None else 0.0
    # one query for the three kinds the bill reads (`status` asks this of every run)
    read = store.events(run_id, kinds=["reclaim", "eval", "checkpoint"])
    by_kind: dict[str, list] = {"reclaim": [], "eval": [], "checkpoint": []}
    for e in read:
        by_kind[e.kind].append(e)
    by_ec2 = {(e.attempt, e.data.get("node", 0)) for e in by_kind["reclaim"] if e.data.get("by") == "ec2"}
    attempts, samples, nodes = [], [], store.nodes(run_id)
    lives = [life for a in records for life in node_lives(a, nodes)]  # (rank or None, record)
    for node, a in lives:
        start, end = a.started_at or a.requested_at, a.ended_at or now
        ec2 = (a.number, node or 0) in by_ec2 and a.end_reason == "spot-interruption"
        attempts.append(
            Attempt(
                f"{run_id}-{a.number}" + ("" if node is None else f".{node}"),
                a.instance_type,
                a.zone,
                start,
                max(end, start),
                gb,
                ebs_provisioned_usd_per_hour=provisioned,
                reclaimed_by_ec2=ec2,
                node=node,
            )
        )
        samples += _prices_in_force(store, a, start, end)
    metric = recipe.target_metric
    evals = [EvalPoint(e.t, e.data[metric]) for e in by_kind["eval"] if metric in e.data]
    first = min((a.requested_at for a in records), default=now)
    end = max((a.ended_at or now for a in records), default=now)
    return RunUsage(
        run_id=run_id,
        records=tuple(a for _, a in lives),
        attempts=tuple(attempts),
        samples=tuple(samples),
        evals=tuple(evals),
        s3=_s3_usage(by_kind["checkpoint"], end - first, len(records)),
        target=None if (goal := run.target_acc or recipe.target) is None else float(goal),
        target_metric=metric,
        origin=min((a.start for a in attempts), default=run.created_at),
        end=end,
        wall_s=end - first,
    )


def price(usage: RunUsage) -> Bill:
    """The usage priced by the rules; a SpotrainError when an attempt has no price in force."""
    cost = run_cost(usage.attempts, usage.samples, s3=usage.s3, evals=usage.evals, target=usage.target)
    return Bill(usage, cost)


def run_bill(store, run_id: str, *, now: float | None = None, run=None) -> Bill:
    """What the run has cost so far (all of it, once it has ended)."""
    return price(run_usage(store, run_id, now=now, run=run))


def spent_and_projected(store, run_id: str, *, next_attempt: bool = False) -> tuple[float, float]:
    """$ spent so far, and $ more the schedule needs at the current attempt's rate (0 when unknown):
    remaining share of the schedule x the training hours the done share took x the price now.
    With `next_attempt` (deciding whether to launch another instance), the projection is at least that
    instance's billed minimum (60 s) at the last attempt's price: a new instance never costs less."""
    bill = run_bill(store, run_id)
    spent = bill.cost.total_usd
    if not bill.cost.attempts:
        return spent, 0.0
    last = bill.cost.attempts[-1]
    rate = last.spot_usd / max(last.billed_s, 1) * 3600.0
    floor = MIN_BILLED_S / 3600.0 * rate if next_attempt else 0.0
    steps = [e for e in store.events(run_id, kinds=["step"]) if "epoch" in e.data]
    starts = store.events(run_id, kinds=["start"])
    if not steps or not starts:
        return spent, floor
    epochs = starts[-1].data.get("config", {}).get("epochs") or 0
    done = steps[-1].data["epoch"] / epochs if epochs else 0.0
    if not 0.0 < done < 1.0:
        return spent, floor
    trained_s = sum(
        (a.ended_at or time.time()) - a.training_started_at
        for a in bill.usage.records
        if a.training_started_at
    )
    return spent, max(trained_s * (1.0 - done) / done / 3600.0 * rate, floor)
