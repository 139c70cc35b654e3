"""The report's figures, drawn with matplotlib's Agg canvas (no pyplot, no display, no global state).

`figure(name, d)` draws one figure of RunData from series.py's numbers, or returns None (noting why in
d.missing) when the run has no data for it; tests read the drawn lines, limits and legends back from
the Figure. Every time axis runs from 0 to the run's end; attempt N has one colour in every figure.
Imported only by spotrain.report (build_report, the compare page), after matplotlib is known to be there.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from spotrain import catalog
from spotrain.errors import SpotrainError
from spotrain.formats import usd, usd_per_hour
from spotrain.report import series as S

if TYPE_CHECKING:
    from spotrain.report.data import RunData


def new_figure(size) -> Figure:
    fig = Figure(figsize=size, dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure(name: str, d: RunData, size=(10.0, 4.0)) -> Figure | None:
    """Figure `name` of the run, or None when it has no data for it (said in d.missing)."""
    fig = new_figure(size)
    return fig if _DRAW[name](fig, d) else None


def draw(name: str, d: RunData, path: Path, *, dpi: int, size) -> bool:
    """Draw figure `name` into `path` (exactly size x dpi pixels); False, and no file, when it has no data."""
    fig = figure(name, d, size)
    if fig is not None:
        fig.savefig(path, dpi=dpi, format="png")
    return fig is not None


def plot(ax, s: S.Series, style: str = "-", **kw) -> None:
    ax.plot(s.xs, s.ys, style, color=s.color, label=s.label, **kw)


def legend(ax, loc: str = "lower right", extra=()) -> None:
    """One entry per label, the first drawn (so a shared label keeps its first artist's colour)."""
    handles, labels = ax.get_legend_handles_labels()
    seen: dict = {}
    for label, handle in zip(labels, handles, strict=True):
        seen.setdefault(label, handle)
    for patch in extra:
        seen.setdefault(patch.get_label(), patch)
    ax.legend(list(seen.values()), list(seen.keys()), loc=loc, fontsize=8)


def _shade_attempts(ax, d: RunData, x) -> None:
    for rec, a in zip(d.attempts, d.usage.attempts, strict=True):
        n = rec.number
        ax.axvspan(x(a.start), x(a.end), color=S.attempt_color(n), alpha=0.15, label=f"attempt {n}")
    for e in d.events["interruption"]:
        ax.axvline(x(e.t), color=S.RED, lw=1.5, label="interruption")


# ---------------------------------------------------------------------------------------------- 1
def _accuracy(fig: Figure, d: RunData) -> bool:
    if not d.events["eval"]:
        d.note("accuracy", "no eval event yet: the trainer has not finished an epoch")
        return False
    clock = S.Clock(d)
    ax_t, ax_usd = fig.subplots(1, 2, sharey=True)
    axes = [(ax_t, clock, clock.label, clock.span)]
    if d.bill is not None:
        spent = d.spent_at(d.end)
        axes.append(
            (ax_usd, d.spent_at, "dollars spent (spot + EBS; each attempt billed at least 60 s)", spent)
        )
    else:
        ax_usd.text(
            0.5, 0.5, "no $ axis: the run cannot be priced yet", ha="center", transform=ax_usd.transAxes
        )
        d.note("accuracy", "the dollars axis: the run cannot be priced yet")
    for ax, x, label, right in axes:
        for metric, style in (("top1", "-o"), ("top5", "--s")):
            curve = S.eval_curve(d, metric, x)
            if curve is not None:
                plot(ax, curve, style, ms=4)
        shade = x if ax is ax_t else (lambda t: d.spent_at(t - 1e-6) if t > d.origin else 0.0)
        _shade_attempts(ax, d, shade)
        if d.bill is not None and d.usage.target is not None:
            ax.axhline(
                d.usage.target, color="grey", ls=":", label=f"target {d.usage.target_metric} {d.usage.target}"
            )
        ax.set_xlabel(label)
        # dollars: a margin past the total, where the last eval (and the target's star) sits, kept whole
        ax.set_xlim(0.0, max(right * (1.03 if ax is ax_usd else 1.0), 1e-9))
        ax.grid(alpha=0.3)
    tt = d.bill.cost.to_target if d.bill else None
    if tt is not None:
        ax_t.plot([tt.seconds / clock.scale], [tt.value], "*", color=S.RED, ms=14, label="target reached")
        ax_usd.plot([tt.usd], [tt.value], "*", color=S.RED, ms=14, label="target reached")
    ax_t.set_ylabel("eval accuracy")
    legend(ax_t)
    fig.suptitle(
        f"{d.run.run_id}: accuracy against time and dollars (no line across the gap between attempts)"
    )
    return True


# ---------------------------------------------------------------------------------------------- 2
def _throughput(fig: Figure, d: RunData) -> bool:
    clock = S.Clock(d)
    curves = S.throughput_curves(d, clock)
    if not curves:
        d.note("throughput", "no step event with img_per_s yet")
        return False
    ax = fig.subplots()
    for c in curves:
        plot(ax, c, "-o", ms=3)
    _shade_attempts(ax, d, clock)
    ax.set_xlim(0.0, max(clock.span, 1e-9))
    ax.set_ylim(bottom=0)
    ax.set_xlabel(clock.label)
    ax.set_ylabel("training images / s")
    ax.grid(alpha=0.3)
    legend(ax, "lower right")
    ax.set_title("throughput of each attempt (training steps only, between step events)")
    return True


# ---------------------------------------------------------------------------------------------- 3
def _spend(fig: Figure, d: RunData) -> bool:
    if not d.attempts:
        d.note("spend", "no attempt yet: nothing spent")
        return False
    clock = S.Clock(d)
    curves = S.spend_curves(d, clock)
    if curves is None:
        d.note("spend", "the run cannot be priced yet")
        return False
    ax = fig.subplots()
    spot, od = curves
    plot(ax, od, "--")
    plot(ax, spot, "-", lw=2)
    _shade_attempts(ax, d, clock)
    ax.set_xlim(0.0, max(clock.span, 1e-9))
    ax.set_ylim(bottom=0)
    ax.set_xlabel(clock.label)
    ax.set_ylabel("dollars, cumulative (S3 in neither)")
    ax.grid(alpha=0.3)
    legend(ax, "upper left")
    said = f"spent {usd(spot.ys[-1])} at spot against {usd(od.ys[-1])} on demand for the same seconds"
    ax.set_title(said.replace("$", r"\$"))  # two $ would make matplotlib's mathtext of the text between
    return True


# ---------------------------------------------------------------------------------------------- 4
def _schedule(fig: Figure, d: RunData) -> bool:
    steps = [e for e in d.events["step"] if isinstance(e.data.get("step"), int)]
    if not steps:
        d.note("schedule", "no step event yet")
        return False
    ax_loss, ax_lr = fig.subplots(2, 1, sharex=True)
    ax_mom = ax_lr.twinx()
    for number, mine in zip(S.numbers(d), S.by_attempt(steps, S.numbers(d)), strict=True):
        c = S.attempt_color(number)
        for ax, key, style in ((ax_loss, "loss", "-o"), (ax_lr, "lr", "-"), (ax_mom, "momentum", "--")):
            pts = [(e.data["step"], e.data[key]) for e in mine if key in e.data]
            if pts:
                ax.plot(*zip(*pts, strict=True), style, color=c, ms=3, label=f"attempt {number} {key}")
    for e in d.events["start"]:
        step = e.data.get("step") or 0
        if e.data.get("resumed_from") or step:
            for ax in (ax_loss, ax_lr):
                ax.axvline(
                    step,
                    color=S.attempt_color(e.attempt or 1),
                    lw=4,
                    alpha=0.5,
                    label=f"attempt {e.attempt} resumes at step {step}",
                )
    for e in d.events["interruption"]:
        for ax in (ax_loss, ax_lr):
            ax.axvline(
                e.data.get("step", 0),
                color=S.RED,
                ls=":",
                lw=2,
                label=f"notice, saved at step {e.data.get('step')}",
            )
    ax_loss.set_ylabel("training loss")
    ax_lr.set_ylabel("learning rate (solid)")
    ax_mom.set_ylabel("momentum (dashed)")
    ax_lr.set_xlabel("step")
    ax_lr.set_xlim(0, max(e.data["step"] for e in steps))
    for ax in (ax_loss, ax_lr):
        ax.grid(alpha=0.3)
    legend(ax_loss, "upper right")
    fig.suptitle("the one-cycle schedule across attempts")
    return True


# ---------------------------------------------------------------------------------------------- 5
_PHASES = (("requested", 0.2), ("booting and sync", 0.5), ("trainer running", 1.0))


def _attempts(fig: Figure, d: RunData) -> bool:
    if not d.attempts:
        d.note("attempts", "no attempt yet: no instance has been requested")
        return False
    clock = S.Clock(d)
    ax = fig.subplots()
    for i, a in enumerate(d.attempts):
        y, col = len(d.attempts) - i, S.attempt_color(a.number)
        end = a.ended_at or d.now
        trainer = [e.t for e in d.events["start"] if e.attempt == a.number]  # the trainer's own clock
        marks = [a.requested_at, a.started_at or end, (trainer or [a.training_started_at or end])[0], end]
        for (t0, t1), (_, alpha) in zip(zip(marks, marks[1:], strict=False), _PHASES, strict=True):
            x0, x1 = clock.clipped(t0), clock.clipped(t1)
            if x1 > x0:
                ax.barh(y, x1 - x0, left=x0, height=0.5, color=col, alpha=alpha)
    for e in d.events["interruption"]:
        ax.axvline(clock(e.t), color=S.RED, lw=1.5, label="interruption notice")
    labels = []
    for a, c in zip(d.attempts, d.attempt_costs(), strict=True):
        spent = "" if c is None else f", {usd(c.spot_usd + c.ebs_usd)}"
        labels.append(f"#{a.number} {a.zone} {a.instance_type}\n{a.end_reason or 'running'}{spent}")
    ax.set_yticks([len(d.attempts) - i for i in range(len(d.attempts))], labels, fontsize=8)
    ax.set_ylim(0.3, len(d.attempts) + 0.7)
    ax.set_xlim(0.0, max(clock.span, 1e-9))
    ax.set_xlabel(clock.label + "; what came before 0 (attempt 1's request) is cut")
    ax.grid(axis="x", alpha=0.3)
    own = [Patch(color=S.attempt_color(a.number), label=f"attempt {a.number}") for a in d.attempts]
    phases = [Patch(color="grey", alpha=alpha, label=what) for what, alpha in _PHASES]
    legend(ax, "upper right", extra=own + phases)
    ax.set_title("attempts: requested (faint), booting and sync, trainer running; end reason, spot + EBS $")
    return True


# ---------------------------------------------------------------------------------------------- 6
def _prices(fig: Figure, d: RunData) -> bool:
    if not d.attempts:
        d.note("prices", "no attempt yet, so no zone to show")
        return False
    clock = S.Clock(d)
    billed = {a.number: (c.billed_s if c else 0) for a, c in zip(d.attempts, d.attempt_costs(), strict=True)}
    lo, hi = S.price_span(d)
    ax = fig.subplots()
    drawn = False
    zones = dict.fromkeys((a.zone, a.instance_type) for a in d.attempts)
    for (zone, itype), grey in zip(zones, _GREYS * len(zones), strict=False):
        curve = d.curves.get((zone, itype))
        if curve is None or not curve.times:
            d.note("prices", f"no spot price sample for {itype} in {zone}")
            continue
        xs, ys = _steps(curve, lo, hi)
        rng = usd(min(ys)) + ("" if min(ys) == max(ys) else f" .. {usd(max(ys))}")
        line = ax.step(
            [clock(x) for x in xs], ys, where="post", color=grey, label=f"{zone} {itype}: {rng}/h"
        )[0]
        for a in (a for a in d.attempts if a.zone == zone and a.instance_type == itype):
            _billed(ax, clock, curve, d, a, billed[a.number])
        drawn = line is not None
    if not drawn:
        return False
    for itype in dict.fromkeys(a.instance_type for a in d.attempts):
        try:
            od = catalog.instance_type(itype).on_demand_usd_per_hour
        except SpotrainError:
            continue
        ax.axhline(od, color="k", ls="--", label=f"on demand {itype} {usd_per_hour(od)}")
    ax.set_ylim(bottom=0)
    ax.set_xlim(0.0, max(clock.span, 1e-9))
    ax.set_xlabel(clock.label)
    ax.set_ylabel("$ per hour")
    ax.grid(alpha=0.3)
    legend(ax, "center right")
    ax.set_title("spot price in each zone used; thick: while each attempt ran, dotted: billed after it")
    return True


_GREYS = ("#555555", "#aaaaaa")  # each zone's price line its own grey: two zones' legend entries differ


def _billed(ax, clock, curve, d: RunData, a, billed_s: float) -> None:
    """Attempt `a`'s billed seconds on its zone's price: thick while its instance ran, dotted for the
    minimum billed after it ended (drawn over the next attempt's thick line, whose colour it would
    otherwise blend into one that no legend entry has)."""
    start = a.started_at or a.requested_at
    ran_s = billed_s if a.ended_at is None else min(billed_s, max(a.ended_at - start, 0.0))
    style = {"where": "post", "color": S.attempt_color(a.number)}
    b0, b1 = S.billed_window(d, start, ran_s)
    if b1 > b0:
        bx, by = _steps(curve, b0, b1)
        label = f"attempt {a.number} billed ({a.zone})"
        ax.step([clock(x) for x in bx], by, lw=7, alpha=0.5, label=label, **style)
    t0, t1 = S.billed_window(d, start + ran_s, billed_s - ran_s)
    if t1 > t0:
        tx, ty = _steps(curve, t0, t1)
        label = f"attempt {a.number}: its 60 s minimum, billed after it ended"
        ax.step([clock(x) for x in tx], ty, lw=2.5, ls=":", zorder=3, label=label, **style)


def _steps(curve, lo: float, hi: float) -> tuple[list[float], list[float]]:
    """The price in force from `lo` to `hi` as step points (each change, and the value at both ends)."""
    lo = max(lo, curve.times[0])
    xs = [lo] + [t for t in curve.times if lo < t < hi] + [hi]
    return xs, [curve.at(x) for x in xs]


_DRAW = {
    "accuracy": _accuracy,
    "throughput": _throughput,
    "spend": _spend,
    "schedule": _schedule,
    "attempts": _attempts,
    "prices": _prices,
}
