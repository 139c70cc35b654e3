"""What a run cost: pure functions of its attempts and the spot price history.

The rule (DESIGN.md, Cost): each attempt is billed per second with a 60-second minimum, at the spot
price in force in its zone at each billed second (a step function of the price samples; a price is
never taken from "now" for a past second), plus its EBS volumes prorated by the second, plus S3
storage and requests. The on-demand equivalent is the same instance-seconds at the catalog's on-demand
price. Time and $ to target stop at the first eval that reached the target (DAWNBench's rule).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from spotrain import catalog
from spotrain.errors import SpotrainError

MIN_BILLED_S = 60  # Linux spot and on-demand: per second, one minute minimum
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


def billed_seconds(start: float, end: float) -> int:
    """Whole seconds billed for a life from `start` to `end`: rounded up, at least 60."""
    if end < start:
        raise ValueError(f"attempt ends ({end}) before it starts ({start})")
    return max(MIN_BILLED_S, math.ceil(end - start))


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
    od_rate = catalog.instance_type(attempt.instance_type).on_demand_usd_per_hour
    return AttemptCost(
        attempt_id=attempt.attempt_id,
        zone=attempt.zone,
        billed_s=billed,
        spot_usd=spot,
        ebs_usd=attempt.ebs_gb * attempt.ebs_usd_per_gb_month * billed / MONTH_S,
        on_demand_usd=od_rate * billed / 3600.0,
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
    out = []
    for a in attempts:
        if a.start <= until:
            out.append(Attempt(**{**a.__dict__, "end": min(a.end, until)}))
    return out


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
    empty = PriceCurve([])

    def costs(atts: Iterable[Attempt]) -> list[AttemptCost]:
        return [attempt_cost(a, by_key.get((a.zone, a.instance_type), empty)) for a in atts]

    per_attempt = costs(attempts)
    gpu_hours = sum(
        c.billed_s * catalog.instance_type(a.instance_type).gpus / 3600.0
        for a, c in zip(attempts, per_attempt, strict=True)
    )
    to_target = None
    hit = first_reaching(evals, target) if target is not None else None
    if hit is not None and attempts:
        clipped = costs(clip(attempts, hit.t))
        usd = sum(c.spot_usd + c.ebs_usd for c in clipped)
        to_target = TargetCost(seconds=hit.t - min(a.start for a in attempts), usd=usd, value=hit.value)
    return RunCost(
        attempts=per_attempt,
        s3_usd=s3_cost(s3) if s3 else 0.0,
        gpu_hours=gpu_hours,
        to_target=to_target,
    )
