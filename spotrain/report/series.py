"""The numbers the report's figures draw, made without matplotlib so that tests read them as data: every
curve broken (a NaN) between attempts, one colour per attempt in every figure, time from 0 (the first
instance's start, the bill's zero) to the run's end, the price axis over that span only, throughput
over time, and cumulative spot $ against the same seconds on demand (cost.py's rules, both).

plots.py (one run) and compare.py (several) draw these; neither computes a number of its own.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from spotrain import cost
from spotrain.report.data import RunData
from spotrain.store import EventRecord

COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
RED = "#d62728"
BREAK = math.nan  # matplotlib leaves a gap at a NaN point: no line across the time between attempts
SPEND_POINTS = 200  # samples of the cumulative $ curves (plus each attempt's start and end)


def attempt_color(number: int) -> str:
    """Attempt N's colour in every figure and legend of a report (and run N's in a compare page)."""
    return COLORS[(number - 1) % len(COLORS)]


@dataclass(frozen=True)
class Series:
    label: str
    xs: tuple[float, ...]
    ys: tuple[float, ...]
    color: str = "k"


class Clock:
    """Seconds, minutes or hours since the run's origin (the first instance's start, as the bill counts
    time to target), whichever suits its length; `span` is the run's own length in those units."""

    def __init__(self, d: RunData) -> None:
        seconds = max(d.end - d.origin, 1.0)
        if seconds < 180:
            self.scale, self.unit = 1.0, "seconds"
        elif seconds < 3 * 3600:
            self.scale, self.unit = 60.0, "minutes"
        else:
            self.scale, self.unit = 3600.0, "hours"
        self.origin, self.end = d.origin, d.end
        self.span = (d.end - d.origin) / self.scale
        self.label = f"wall-clock ({self.unit} since the first instance started)"

    def __call__(self, t: float) -> float:
        return (t - self.origin) / self.scale

    def clipped(self, t: float) -> float:
        """`t` on the axis, held inside [0, span] (a request made before the first instance started)."""
        return min(max(self(t), 0.0), self.span)


def broken(groups: Iterable[list[tuple[float, float]]], label: str, color: str = "k") -> Series | None:
    """One series of several groups of points, a BREAK between groups; None when there is no point."""
    xs: list[float] = []
    ys: list[float] = []
    for pts in (g for g in groups if g):
        if xs:
            xs.append(BREAK)
            ys.append(BREAK)
        xs += [x for x, _ in pts]
        ys += [y for _, y in pts]
    return Series(label, tuple(xs), tuple(ys), color) if xs else None


def by_attempt(events: list[EventRecord], numbers: Iterable[int]) -> list[list[EventRecord]]:
    """The events of each attempt, in the attempts' order."""
    return [[e for e in events if (e.attempt or 0) == n] for n in numbers]


def numbers(d: RunData) -> list[int]:
    """The attempts' numbers, with any attempt an event names that the store has no row for."""
    seen = [a.number for a in d.attempts]
    extra = {e.attempt or 0 for kind in ("eval", "step") for e in d.events[kind]} - set(seen)
    return seen + sorted(extra)


def eval_curve(d: RunData, metric: str, x: Callable[[float], float], color: str = "k") -> Series | None:
    """The eval metric against x(t), broken between attempts."""
    groups = [
        [(x(e.t), float(e.data[metric])) for e in mine if isinstance(e.data.get(metric), int | float)]
        for mine in by_attempt(d.events["eval"], numbers(d))
    ]
    return broken(groups, metric, color)


def throughput_curves(d: RunData, x: Callable[[float], float]) -> list[Series]:
    """Training images/s of each `step` event against x(t), one series (in its colour) an attempt."""
    out = []
    for n, mine in zip(numbers(d), by_attempt(d.events["step"], numbers(d)), strict=True):
        pts = [(x(e.t), float(e.data["img_per_s"])) for e in mine if _number(e.data.get("img_per_s"))]
        if pts:
            out.append(
                Series(f"attempt {n}", tuple(x for x, _ in pts), tuple(y for _, y in pts), attempt_color(n))
            )
    return out


def _number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def spend_times(d: RunData) -> list[float]:
    """Unix seconds at which the cumulative $ are sampled: evenly over the run, and just before and at
    each attempt's start (where its first billed minute is charged) and at its end."""
    lo, hi = d.origin, max(d.end, d.origin)
    even = [lo + (hi - lo) * i / SPEND_POINTS for i in range(SPEND_POINTS + 1)]
    marks = [t for a in d.usage.attempts for t in (a.start - 1e-6, a.start, a.end)]
    return sorted({t for t in even + marks if lo <= t <= hi})


def spend_curves(d: RunData, x: Callable[[float], float]) -> tuple[Series, Series] | None:
    """(spot + EBS $ spent by each second, the same instance-seconds on demand + EBS) against x(t), by
    cost.py's rules (each attempt billed from its start, at least 60 s); S3 is in neither (it is the
    same in both). None when the run cannot be priced yet."""
    if d.bill is None:
        return None
    spot, od, ts = [], [], spend_times(d)
    for t in ts:
        spot.append(d.spent_at(t))
        od.append(sum(_on_demand_usd(a) for a in cost.clip(d.usage.attempts, t)))
    xs = tuple(x(t) for t in ts)
    return (
        Series("spot (spot + EBS $, as billed)", xs, tuple(spot), attempt_color(1)),
        Series("on demand (the same seconds)", xs, tuple(od), "k"),
    )


def _on_demand_usd(a: cost.Attempt) -> float:
    """Attempt `a`'s on-demand $ and its EBS, as cost.attempt_cost counts them into on_demand_usd (the
    spot curve is not needed for those: any price in force at its start will do)."""
    c = cost.attempt_cost(a, cost.PriceCurve([cost.PriceSample(a.zone, a.instance_type, a.start, 0.0)]))
    return c.on_demand_usd + c.ebs_usd


def price_span(d: RunData) -> tuple[float, float]:
    """Unix s the price figure covers: the run's own span (not the billed minimum past its end)."""
    return d.origin, max(d.end, d.origin + 1e-6)


def billed_window(d: RunData, start: float, billed_s: float) -> tuple[float, float]:
    """An attempt's billed seconds, held inside the run's span."""
    lo, hi = price_span(d)
    return max(start, lo), min(start + billed_s, hi)
