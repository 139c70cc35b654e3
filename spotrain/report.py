"""The run report: five PNGs made with matplotlib and one self-contained HTML file that embeds them.

    build_report(store, run_id, out_dir)  ->  out_dir/report.html, accuracy.png, schedule.png,
                                              attempts.png, prices.png, summary.png

The summary's dollars and seconds are `spotrain cost --json`'s (render.cost_json of bill.run_bill), so
the report and the cost table never disagree. Data the run does not have yet (no eval, no price sample)
is named in the HTML and in `ReportResult.missing`; everything else is still drawn. matplotlib is an
optional extra (`pip install 'spotrain[report]'`), imported only when a report is built. This module
never prints; the figures live in report_plots.py, the HTML in report_html.py.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spotrain import catalog, cost
from spotrain.bill import Bill, run_bill
from spotrain.errors import SpotrainError
from spotrain.render import cost_json
from spotrain.store import AttemptRecord, EventRecord, RunRecord, Store

DPI = 100
# name -> (section title, figure size in inches); a PNG is exactly size x DPI pixels.
FIGURES: dict[str, tuple[str, tuple[float, float]]] = {
    "accuracy": ("Accuracy against wall-clock time and dollars", (12.0, 4.5)),
    "schedule": ("Loss, learning rate and momentum against step", (10.0, 6.0)),
    "attempts": ("Attempts", (10.0, 3.5)),
    "prices": ("Spot price in each zone used", (10.0, 4.0)),
    "summary": ("Summary", (7.0, 5.0)),
}
PIP_HINT = "pip install 'spotrain[report]'"
_TRAINER_KINDS = ("start", "step", "eval", "checkpoint", "interruption", "done")


@dataclass(frozen=True)
class ReportResult:
    run_id: str
    html: Path
    pngs: dict[str, Path]  # figure name -> file, only for the figures that could be drawn
    missing: list[str]  # "section: what is missing", also said in the HTML
    summary: dict[str, Any]  # cost_json's keys and numbers, plus lost work, throughput, utilisation


@dataclass
class RunData:
    """Everything the figures need, read from the store once."""

    run: RunRecord
    attempts: list[AttemptRecord]
    bill: Bill | None  # None when the run cannot be priced yet (no spot price sample)
    events: dict[str, list[EventRecord]]  # the trainer's events by kind, in time order
    origin: float  # unix s: the first instance's start (cost.py's zero for time to target)
    end: float  # unix s: the last attempt's end, or now
    now: float
    priced: list[cost.Attempt] = field(default_factory=list)  # as bill.py prices them
    curves: dict[tuple[str, str], cost.PriceCurve] = field(default_factory=dict)
    missing: dict[str, list[str]] = field(default_factory=dict)

    def spent_at(self, t: float) -> float:
        """Spot + EBS dollars spent by second `t`: cost.py's rule for $ to target, at any second."""
        empty = cost.PriceCurve([])
        return sum(
            c.spot_usd + c.ebs_usd
            for c in (
                cost.attempt_cost(a, self.curves.get((a.zone, a.instance_type), empty))
                for a in cost.clip(self.priced, t)
            )
        )

    def note(self, section: str, what: str) -> None:
        self.missing.setdefault(section, []).append(what)


# ---------------------------------------------------------------------------------------------- data
def load(store: Store, run_id: str, *, now: float | None = None) -> RunData:
    """The run's record, attempts, trainer events and bill; what cannot be had is noted as missing."""
    now = now or time.time()
    run = store.get_run(run_id)
    attempts = store.attempts(run_id)
    events: dict[str, list[EventRecord]] = {k: [] for k in _TRAINER_KINDS}
    for e in store.events(run_id, kinds=_TRAINER_KINDS):
        if e.source == "trainer":
            events[e.kind].append(e)
    starts = [a.started_at or a.requested_at for a in attempts]
    ends = [a.ended_at or now for a in attempts]
    d = RunData(run, attempts, None, events, min(starts, default=run.created_at), max(ends, default=now), now)
    try:
        d.bill = run_bill(store, run_id, now=now)
    except SpotrainError as err:
        d.note("summary", f"cost: {err.message}")
    root_gb = _root_gb(run)
    samples: list[cost.PriceSample] = []
    for a, start, end in zip(attempts, starts, ends, strict=True):
        d.priced.append(
            cost.Attempt(f"{run_id}-{a.number}", a.instance_type, a.zone, start, max(end, start), root_gb)
        )
        samples += store.price_samples(
            region=a.region, instance_type=a.instance_type, zones=[a.zone], start=start, end=end
        )
    d.curves = cost.curves(samples)
    return d


def _root_gb(run: RunRecord) -> float:
    try:
        return float(catalog.recipe(run.spec.get("recipe", "")).root_volume_gb)
    except SpotrainError:
        return 0.0


def lost_work(d: RunData) -> tuple[int, int]:
    """(steps redone, interruptions): for each interrupted attempt followed by another, the steps it had
    done by the notice (its last step event or the interruption's step) less the step the next resumed at."""
    lost = interruptions = 0
    for i, a in enumerate(d.attempts):
        nxt = d.attempts[i + 1] if i + 1 < len(d.attempts) else None
        notices = [e for e in d.events["interruption"] if e.attempt == a.number]
        if not notices and a.end_reason != "spot-interruption":
            continue
        interruptions += 1
        if nxt is None:
            continue
        mine = [e.data.get("step") for e in d.events["step"] + notices if e.attempt == a.number]
        done = max((s for s in mine if isinstance(s, int)), default=a.last_step or 0)
        starts = [e.data.get("step") for e in d.events["start"] if e.attempt == nxt.number]
        resumed = starts[0] if starts and isinstance(starts[0], int) else nxt.resumed_from_step or 0
        lost += max(0, done - resumed)
    return lost, interruptions


def throughput(d: RunData) -> tuple[float | None, float | None, float | None]:
    """(median images/s of the step events, utilisation of the GPUs' peak, that peak in TFLOPS);
    utilisation and peak are None where the catalog knows no peak or no FLOPs for the recipe."""
    rates = [
        e.data["img_per_s"] for e in d.events["step"] if isinstance(e.data.get("img_per_s"), int | float)
    ]
    if not rates:
        d.note("summary", "throughput: no step event with img_per_s yet")
        return None, None, None
    img_s = statistics.median(rates)
    types = Counter(a.instance_type for a in d.attempts).most_common(1)
    name = types[0][0] if types else d.run.spec.get("instance") or ""
    try:
        peak = catalog.instance_type(name).peak_tflops * int(d.run.spec.get("nodes") or 1)
        flops = catalog.recipe(d.run.spec.get("recipe", "")).train_flops_per_sample
    except SpotrainError:
        d.note("summary", f"utilisation: the catalog knows no peak TFLOPS for '{name}'")
        return img_s, None, None
    return img_s, img_s * flops / (peak * 1e12), peak


def summarize(d: RunData) -> dict[str, Any]:
    """cost_json's numbers (the same dict) plus the run's state, lost work and throughput."""
    out: dict[str, Any] = cost_json(d.bill) if d.bill else {"run": d.run.run_id}
    lost, interruptions = lost_work(d)
    img_s, util, peak = throughput(d)
    spec = d.run.spec
    out.update(
        state=d.run.state.value,
        recipe=spec.get("recipe"),
        instance=spec.get("instance"),
        dry_run=d.run.dry_run,
        n_attempts=len(d.attempts),
        interruptions=interruptions,
        lost_steps=lost,
        img_per_s=img_s,
        utilisation=util,
        peak_tflops=peak,
    )
    return out


def run_summary(store: Store, run_id: str) -> dict[str, Any]:
    """The report's summary alone, without matplotlib: what `spotrain compare` shows side by side."""
    return summarize(load(store, run_id))


# ---------------------------------------------------------------------------------------------- build
def _matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError as err:
        raise SpotrainError(
            f"the report needs matplotlib, which is not installed ({err}): {PIP_HINT}",
            f"{PIP_HINT}   (or: pip install 'matplotlib>=3.8')",
        ) from None


def _writable(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".spotrain-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise SpotrainError(
            f"cannot write the report to {out_dir}: {err.strerror or err}",
            "pass --out with a directory you can create and write to",
        ) from None


def build_report(store: Store, run_id: str, out_dir: Path, *, now: float | None = None) -> ReportResult:
    """Write `out_dir/report.html` and the PNGs of run `run_id`; raises SpotrainError when matplotlib is
    missing or `out_dir` cannot be written, and notes (never raises on) data the run does not have."""
    _matplotlib()
    out_dir = Path(out_dir).expanduser()
    _writable(out_dir)
    from spotrain import report_html, report_plots

    d = load(store, run_id, now=now)
    summary = summarize(d)
    rows = summary_rows(summary)
    pngs: dict[str, Path] = {}
    for name in FIGURES:
        path = out_dir / f"{name}.png"
        drawn = report_plots.draw(name, d, rows, path, dpi=DPI, size=FIGURES[name][1])
        if drawn:
            pngs[name] = path
        else:
            path.unlink(missing_ok=True)  # never leave a stale figure of an earlier report
    html = out_dir / "report.html"
    tmp = html.with_suffix(".html.tmp")
    tmp.write_text(report_html.page(d, summary, rows, pngs), encoding="utf-8")
    tmp.replace(html)
    missing = [f"{section}: {what}" for section in FIGURES for what in d.missing.get(section, [])]
    return ReportResult(run_id, html, pngs, missing, summary)


# ---------------------------------------------------------------------------------------------- words
def hms(seconds: float) -> str:
    h, rem = divmod(int(round(seconds)), 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}"


def summary_rows(s: dict[str, Any]) -> list[tuple[str, str]]:
    """The summary as (label, value) lines: the HTML table, summary.png and `spotrain compare`."""
    rows = [
        ("run", s["run"] + (" (dry-run)" if s.get("dry_run") else "")),
        ("state", str(s.get("state"))),
        ("recipe on instance", f"{s.get('recipe')} on {s.get('instance')}"),
    ]
    if "total_usd" in s:
        tt, metric = s["to_target"], f"{s['target_metric']} {s['target']}"
        rows += [
            ("wall-clock", hms(s["wall_s"])),
            (f"time to {metric}", hms(tt["seconds"]) if tt else "not reached"),
            (f"$ to {metric}", f"${tt['usd']:.4f}" if tt else "not reached"),
            ("total $", f"${s['total_usd']:.4f}"),
            ("  spot / EBS / S3", f"${s['spot_usd']:.4f} / ${s['ebs_usd']:.4f} / ${s['s3_usd']:.4f}"),
            ("on-demand equivalent", f"${s['on_demand_usd']:.4f}"),
            ("savings", f"${s['savings_usd']:.4f} ({s['savings_fraction']:.0%})"),
            ("GPU-hours", f"{s['gpu_hours']:.3f}"),
        ]
    else:
        rows.append(("$", "unknown: the run cannot be priced yet"))
    rows += [
        ("attempts", f"{s['n_attempts']} ({s['interruptions']} interrupted)"),
        ("lost work", f"{s['lost_steps']} steps redone after interruptions"),
        ("throughput", "unknown" if s["img_per_s"] is None else f"{s['img_per_s']:,.0f} images/s (median)"),
        (
            "utilisation",
            "unknown"
            if s["utilisation"] is None
            else f"{s['utilisation']:.3%} of {s['peak_tflops']:,.0f} TFLOPS peak"
            + (" (dry-run: a CPU did the work)" if s.get("dry_run") else ""),
        ),
    ]
    return rows


def compare_table(summaries: list[dict[str, Any]]):
    """`spotrain compare`: one column a run, one row a summary line (a rich Table)."""
    from rich.table import Table

    t = Table(title="runs side by side", title_justify="left")
    t.add_column("")
    columns = [dict(summary_rows(s)) for s in summaries]
    for s in summaries:
        t.add_column(s["run"], justify="right")
    labels = list(dict.fromkeys(label for col in columns for label in col))
    for label in labels:
        t.add_row(label, *(col.get(label, "") for col in columns))
    return t
