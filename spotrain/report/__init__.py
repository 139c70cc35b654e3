"""The run report: six PNGs made with matplotlib and one self-contained HTML file that embeds them (the
summary is a table in the page, not an image).

    build_report(store, run_id, out_dir)  ->  out_dir/report.html, accuracy.png, throughput.png,
                                              spend.png, schedule.png, attempts.png, prices.png
    build_compare(store, run_ids, out_dir) -> out_dir/compare.html (the runs overlaid; compare.py)

data.py reads the run (its bill, as `spotrain cost` prices it, and the trainer's events); summary.py
turns it into `spotrain cost --json`'s numbers plus lost work and throughput, so the report and the
cost table never disagree; series.py makes the numbers each figure draws, plots.py draws them,
html.py writes the page. Data the run does not
have yet (no eval, no price sample) is named in the HTML and in `ReportResult.missing`; everything else
is still drawn. matplotlib is an optional extra (`pip install 'spotrain[report]'`), imported only when a
report is built. Nothing here prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spotrain.errors import SpotrainError
from spotrain.report.compare import CompareResult
from spotrain.report.data import RunData, load
from spotrain.report.html import DPI, FIGURES, page
from spotrain.report.summary import compare_table, run_summary, summarize, summary_rows
from spotrain.store import Store

__all__ = [
    "DPI",
    "FIGURES",
    "CompareResult",
    "ReportResult",
    "build_compare",
    "build_report",
    "compare_table",
    "load_run",
    "run_summary",
    "summarize",
]

PIP_HINT = "pip install 'spotrain[report]'"


@dataclass(frozen=True)
class ReportResult:
    run_id: str
    html: Path
    pngs: dict[str, Path]  # figure name -> file, only for the figures that could be drawn
    missing: list[str]  # "section: what is missing", also said in the HTML
    summary: dict[str, Any]  # summary.bill_json's keys and numbers, plus lost work, throughput, utilisation


def matplotlib_or_hint() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError as err:
        raise SpotrainError(
            f"the report needs matplotlib, which is not installed ({err}): {PIP_HINT}",
            f"{PIP_HINT}   (or: pip install 'matplotlib>=3.8')",
        ) from None


def writable(out_dir: Path) -> None:
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
    matplotlib_or_hint()
    out_dir = Path(out_dir).expanduser()
    writable(out_dir)
    from spotrain.report import plots

    d = load(store, run_id, now=now)
    summary = summarize(d)
    rows = summary_rows(summary)
    pngs: dict[str, Path] = {}
    for name in FIGURES:
        path = out_dir / f"{name}.png"
        if plots.draw(name, d, path, dpi=DPI, size=FIGURES[name][1]):
            pngs[name] = path
        else:
            path.unlink(missing_ok=True)  # never leave a stale figure of an earlier report
    (out_dir / "summary.png").unlink(missing_ok=True)  # earlier reports drew the table as an image too
    html = out_dir / "report.html"
    tmp = html.with_suffix(".html.tmp")
    tmp.write_text(page(d, rows, pngs), encoding="utf-8")
    tmp.replace(html)
    missing = [
        f"{section}: {what}" for section in (*FIGURES, "summary") for what in d.missing.get(section, [])
    ]
    return ReportResult(run_id, html, pngs, missing, summary)


def load_run(store: Store, run_id: str, *, now: float | None = None) -> RunData:
    """A run's data for build_compare, read while its store is open (runs may be in different stores)."""
    return load(store, run_id, now=now)


def build_compare(runs: list[RunData], out_dir: Path) -> CompareResult:
    """Write `out_dir/compare.html`: the runs overlaid (accuracy against time and $, cumulative $ against
    on demand, throughput) and their summaries side by side; raises SpotrainError as build_report does."""
    matplotlib_or_hint()
    out_dir = Path(out_dir).expanduser()
    writable(out_dir)
    from spotrain.report import compare

    return compare.write(runs, out_dir)
