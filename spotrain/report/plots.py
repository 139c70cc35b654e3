"""The report's figures, drawn with matplotlib's Agg canvas (no pyplot, no display, no global state).

Each `_name(fig, d)` draws one figure of RunData and returns False (noting why in d.missing) when the
run has no data for it. Imported only by spotrain.report.build_report, after it has checked matplotlib is there.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from spotrain import catalog
from spotrain.errors import SpotrainError
from spotrain.formats import usd, usd_per_hour

if TYPE_CHECKING:
    from spotrain.report.data import RunData

_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]
_RED = "#d62728"


def draw(name: str, d: RunData, rows: list[tuple[str, str]], path: Path, *, dpi: int, size) -> bool:
    """Draw figure `name` into `path` (exactly size x dpi pixels); False, and no file, when it has no data."""
    fig = Figure(figsize=size, dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    drawn = _summary(fig, rows) if name == "summary" else _DRAW[name](fig, d)
    if drawn:
        fig.savefig(path, dpi=dpi, format="png")
    return drawn


def _color(number: int) -> str:
    return _COLORS[(number - 1) % len(_COLORS)]


class _Clock:
    """Seconds, minutes or hours since the run's origin, whichever suits its length."""

    def __init__(self, d: RunData) -> None:
        span = max(d.end - d.origin, 1.0)
        if span < 180:
            self.scale, unit = 1.0, "seconds"
        elif span < 3 * 3600:
            self.scale, unit = 60.0, "minutes"
        else:
            self.scale, unit = 3600.0, "hours"
        self.origin = d.origin
        self.label = f"wall-clock ({unit} since the first instance started)"

    def __call__(self, t: float) -> float:
        return (t - self.origin) / self.scale


# ---------------------------------------------------------------------------------------------- 1
def _accuracy(fig: Figure, d: RunData) -> bool:
    evals = d.events["eval"]
    if not evals:
        d.note("accuracy", "no eval event yet: the trainer has not finished an epoch")
        return False
    clock = _Clock(d)
    ax_t, ax_usd = fig.subplots(1, 2, sharey=True)
    axes = [(ax_t, clock, clock.label)]
    if d.bill is not None:
        axes.append((ax_usd, d.spent_at, "dollars spent (spot + EBS; each attempt billed at least 60 s)"))
    else:
        ax_usd.text(
            0.5, 0.5, "no $ axis: the run cannot be priced yet", ha="center", transform=ax_usd.transAxes
        )
        d.note("accuracy", "the dollars axis: the run cannot be priced yet")
    for ax, x, label in axes:
        for metric, style in (("top1", "-o"), ("top5", "--s")):
            pts = [(x(e.t), e.data[metric]) for e in evals if isinstance(e.data.get(metric), int | float)]
            if pts:
                ax.plot(*zip(*pts, strict=True), style, color="k", ms=4, label=metric)
        for a in d.attempts:
            start, end = a.started_at or a.requested_at, a.ended_at or d.now
            left = x(start) if ax is ax_t else x(start - 1e-6)  # $: what was spent before it began
            ax.axvspan(left, x(end), color=_color(a.number), alpha=0.15, label=f"attempt {a.number}")
        for e in d.events["interruption"]:
            ax.axvline(x(e.t), color=_RED, lw=1.5, label="interruption")
        if d.bill is not None and d.usage.target is not None:
            target, metric = d.usage.target, d.usage.target_metric
            ax.axhline(target, color="grey", ls=":", label=f"target {metric} {target}")
        ax.set_xlabel(label)
        ax.set_xlim(left=min(0.0, ax.get_xlim()[0]))
        ax.grid(alpha=0.3)
    tt = d.bill.cost.to_target if d.bill else None
    if tt is not None:
        ax_t.plot([tt.seconds / clock.scale], [tt.value], "*", color=_RED, ms=14, label="target reached")
        ax_usd.plot([tt.usd], [tt.value], "*", color=_RED, ms=14, label="target reached")
    ax_t.set_ylabel("eval accuracy")
    _legend(ax_t)
    fig.suptitle(f"{d.run.run_id}: accuracy against time and dollars")
    return True


def _legend(ax, loc: str = "lower right") -> None:
    handles, labels = ax.get_legend_handles_labels()
    seen = dict(zip(labels, handles, strict=True))  # one entry per label
    ax.legend(seen.values(), seen.keys(), loc=loc, fontsize=8)


# ---------------------------------------------------------------------------------------------- 2
def _schedule(fig: Figure, d: RunData) -> bool:
    steps = [e for e in d.events["step"] if isinstance(e.data.get("step"), int)]
    if not steps:
        d.note("schedule", "no step event yet")
        return False
    ax_loss, ax_lr = fig.subplots(2, 1, sharex=True)
    ax_mom = ax_lr.twinx()
    for number in sorted({e.attempt or 0 for e in steps}):
        mine = [e for e in steps if (e.attempt or 0) == number]
        s = [e.data["step"] for e in mine]
        c = _color(number)
        for ax, key, style in ((ax_loss, "loss", "-o"), (ax_lr, "lr", "-"), (ax_mom, "momentum", "--")):
            pts = [(x, e.data[key]) for x, e in zip(s, mine, strict=True) if key in e.data]
            if pts:
                ax.plot(*zip(*pts, strict=True), style, color=c, ms=3, label=f"attempt {number} {key}")
    for e in d.events["start"]:
        step = e.data.get("step") or 0
        if e.data.get("resumed_from") or step:
            for ax in (ax_loss, ax_lr):
                ax.axvline(
                    step,
                    color=_color(e.attempt or 1),
                    lw=4,
                    alpha=0.5,
                    label=f"attempt {e.attempt} resumes at step {step}",
                )
    for e in d.events["interruption"]:
        for ax in (ax_loss, ax_lr):
            ax.axvline(
                e.data.get("step", 0),
                color=_RED,
                ls=":",
                lw=2,
                label=f"notice, saved at step {e.data.get('step')}",
            )
    ax_loss.set_ylabel("training loss")
    ax_lr.set_ylabel("learning rate (solid)")
    ax_mom.set_ylabel("momentum (dashed)")
    ax_lr.set_xlabel("step")
    for ax in (ax_loss, ax_lr):
        ax.grid(alpha=0.3)
    _legend(ax_loss, "upper right")
    fig.suptitle("the one-cycle schedule across attempts")
    return True


# ---------------------------------------------------------------------------------------------- 3
def _attempts(fig: Figure, d: RunData) -> bool:
    if not d.attempts:
        d.note("attempts", "no attempt yet: no instance has been requested")
        return False
    clock = _Clock(d)
    ax = fig.subplots()
    for i, (a, c) in enumerate(zip(d.attempts, d.attempt_costs(), strict=True)):
        y, col = len(d.attempts) - i, _color(a.number)
        end = a.ended_at or d.now
        trainer = [e.t for e in d.events["start"] if e.attempt == a.number]  # the trainer's own clock
        marks = [a.requested_at, a.started_at or end, (trainer or [a.training_started_at or end])[0], end]
        for (t0, t1), alpha, what in zip(
            zip(marks, marks[1:], strict=False),
            (0.2, 0.5, 1.0),
            ("requested", "booting and sync", "trainer running"),
            strict=True,
        ):
            if t1 > t0:
                ax.barh(
                    y, clock(t1) - clock(t0), left=clock(t0), height=0.5, color=col, alpha=alpha, label=what
                )
        spent = "" if c is None else f", {usd(c.spot_usd + c.ebs_usd)}"
        ax.text(clock(end), y, f"  {a.end_reason or 'running'}{spent}", va="center", fontsize=9)
    for e in d.events["interruption"]:
        ax.axvline(clock(e.t), color=_RED, lw=1.5, label="interruption notice")
    ax.set_yticks(
        [len(d.attempts) - i for i in range(len(d.attempts))],
        [f"#{a.number} {a.zone}\n{a.instance_type}" for a in d.attempts],
    )
    ax.set_ylim(0.3, len(d.attempts) + 0.7)
    ax.set_xlim(right=clock(d.end) + 0.3 * max(clock(d.end), 1e-9))  # room for the end labels
    ax.set_xlabel(clock.label)
    ax.grid(axis="x", alpha=0.3)
    _legend(ax, "upper right")
    ax.set_title("attempts: requested (faint), booting and sync, trainer running; end reason, spot + EBS $")
    return True


# ---------------------------------------------------------------------------------------------- 4
def _prices(fig: Figure, d: RunData) -> bool:
    if not d.attempts:
        d.note("prices", "no attempt yet, so no zone to show")
        return False
    clock = _Clock(d)
    billed = {a.number: (c.billed_s if c else 0) for a, c in zip(d.attempts, d.attempt_costs(), strict=True)}
    t1 = max([d.end] + [(a.started_at or a.requested_at) + billed[a.number] for a in d.attempts])
    pad = 0.05 * (t1 - d.origin) + 1.0
    lo, hi = d.origin - pad, t1 + pad
    ax = fig.subplots()
    drawn = False
    for zone, itype in dict.fromkeys((a.zone, a.instance_type) for a in d.attempts):
        curve = d.curves.get((zone, itype))
        if curve is None or not curve.times:
            d.note("prices", f"no spot price sample for {itype} in {zone}")
            continue
        xs, ys = _steps(curve, lo, hi)
        rng = usd(min(ys)) + ("" if min(ys) == max(ys) else f" .. {usd(max(ys))}")
        label = f"{zone} {itype}: {rng}/h"
        line = ax.step([clock(x) for x in xs], ys, where="post", label=label)[0]
        for a in (a for a in d.attempts if a.zone == zone and a.instance_type == itype):
            start = a.started_at or a.requested_at
            bx, by = _steps(curve, start, start + billed[a.number])
            ax.step(
                [clock(x) for x in bx],
                by,
                where="post",
                lw=7,
                alpha=0.35,
                color=line.get_color(),
                label=f"attempt {a.number} billed",
            )
        drawn = True
    if not drawn:
        return False
    for itype in dict.fromkeys(a.instance_type for a in d.attempts):
        try:
            od = catalog.instance_type(itype).on_demand_usd_per_hour
        except SpotrainError:
            continue
        ax.axhline(od, color="k", ls="--", label=f"on demand {itype} {usd_per_hour(od)}")
    ax.set_ylim(bottom=0)
    ax.set_xlabel(clock.label)
    ax.set_ylabel("$ per hour")
    ax.grid(alpha=0.3)
    _legend(ax, "center right")
    ax.set_title("spot price in force in each zone used; thick: the seconds each attempt was billed")
    return True


def _steps(curve, lo: float, hi: float) -> tuple[list[float], list[float]]:
    """The price in force from `lo` to `hi` as step points (each change, and the value at both ends)."""
    first = curve.times[0]
    lo = max(lo, first)
    xs = [lo] + [t for t in curve.times if lo < t < hi] + [hi]
    return xs, [curve.at(x) for x in xs]


# ---------------------------------------------------------------------------------------------- 5
def _summary(fig: Figure, rows: list[tuple[str, str]]) -> bool:
    ax = fig.subplots()
    ax.axis("off")
    table = ax.table(cellText=[list(r) for r in rows], colLabels=["", "value"], loc="center", cellLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(9)
    table.auto_set_column_width([0, 1])
    ax.set_title("summary (the same numbers as `spotrain cost --json`)")
    return True


_DRAW = {"accuracy": _accuracy, "schedule": _schedule, "attempts": _attempts, "prices": _prices}
