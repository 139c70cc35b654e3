"""`spotrain compare RUN RUN ...`'s page: one self-contained HTML file with the runs overlaid (one colour a
run) on four figures, eval accuracy against wall-clock and against dollars, cumulative spot $ against
on demand, throughput, and the runs' summaries side by side. Each run's time is counted from its own
first instance's start, so runs made on different days overlay. The figures are embedded as base64
PNGs and not left as files: the page is the one thing written.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from html import escape
from pathlib import Path

from spotrain.report import series as S
from spotrain.report.data import RunData
from spotrain.report.html import _CSS, _utc
from spotrain.report.summary import summarize, summary_rows

# name -> (section title, figure size in inches)
COMPARE_FIGURES: dict[str, tuple[str, tuple[float, float]]] = {
    "accuracy": ("Eval accuracy against wall-clock", (10.0, 4.0)),
    "accuracy_usd": ("Eval accuracy against dollars spent (spot + EBS)", (10.0, 4.0)),
    "spend": ("Cumulative dollars: spot (solid) against on demand (dashed)", (10.0, 4.0)),
    "throughput": ("Throughput over time", (10.0, 3.5)),
}


@dataclass(frozen=True)
class CompareResult:
    html: Path
    run_ids: list[str]
    figures: list[str]  # the names of COMPARE_FIGURES drawn on the page
    missing: list[str]  # "figure: what is missing"


def labels(run_ids: list[str]) -> list[str]:
    """Each run's name in the legends; a run given twice is told apart by its place."""
    return [r if run_ids.count(r) == 1 else f"{r} ({i + 1})" for i, r in enumerate(run_ids)]


def _axis(runs: list[RunData]) -> S.Clock:
    """The longest run's clock: its unit (s, min, h) serves every run's own origin."""
    return S.Clock(max(runs, key=lambda d: d.end - d.origin))


def overlays(runs: list[RunData], names: list[str]) -> dict[str, list[tuple[S.Series, str]]]:
    """figure name -> its (series, line style) for every run that has the data, each run in its colour."""
    clock = _axis(runs)
    out: dict[str, list[tuple[S.Series, str]]] = {name: [] for name in COMPARE_FIGURES}
    for i, (d, name) in enumerate(zip(runs, names, strict=True)):
        color, metric = S.attempt_color(i + 1), d.usage.target_metric

        def since(t: float, d: RunData = d) -> float:
            return (t - d.origin) / clock.scale

        acc = S.eval_curve(d, metric, since, color)
        if acc is not None:
            out["accuracy"].append((_recolor(acc, f"{name} {metric}", color), "-o"))
        if d.bill is not None:
            acc_usd = S.eval_curve(d, metric, d.spent_at, color)
            if acc_usd is not None:
                out["accuracy_usd"].append((_recolor(acc_usd, f"{name} {metric}", color), "-o"))
            spend = S.spend_curves(d, since)
            if spend is not None:
                spot, od = spend
                out["spend"] += [
                    (_recolor(spot, f"{name} spot", color), "-"),
                    (_recolor(od, f"{name} on demand", color), "--"),
                ]
        groups = [list(zip(c.xs, c.ys, strict=True)) for c in S.throughput_curves(d, since)]
        rate = S.broken(groups, f"{name} images/s", color)
        if rate is not None:
            out["throughput"].append((rate, "-o"))
    return out


def _recolor(s: S.Series, label: str, color: str) -> S.Series:
    return S.Series(label, s.xs, s.ys, color)


def draw(name: str, lines: list[tuple[S.Series, str]], clock: S.Clock):
    """The Figure of one overlay (matplotlib imported here, after build_compare checked it is there)."""
    from spotrain.report import plots

    fig = plots.new_figure(COMPARE_FIGURES[name][1])
    ax = fig.subplots()
    for s, style in lines:
        plots.plot(ax, s, style, ms=3)
    if name == "accuracy_usd":  # dollars from 0; matplotlib's margin keeps the last eval's dot whole
        ax.set_xlim(left=0.0)
    else:  # time from 0 to the longest run's end, no margin past it: the report's axes
        xs = [x for s, _ in lines for x in s.xs if x == x]  # x == x: not the NaN of a break
        ax.set_xlim(0.0, max(clock.span, *xs, 1e-9))
    ax.set_ylim(bottom=0.0)
    xlabel = {
        "accuracy_usd": "dollars spent (spot + EBS; each attempt billed at least 60 s)",
    }.get(name, f"wall-clock ({clock.unit} since each run's first instance started)")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(
        {"spend": "dollars, cumulative", "throughput": "training images / s"}.get(name, "eval accuracy")
    )
    ax.grid(alpha=0.3)
    plots.legend(ax, "lower right" if name.startswith("accuracy") or name == "throughput" else "upper left")
    ax.set_title(COMPARE_FIGURES[name][0])
    return fig


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _table(summaries: list[dict], names: list[str]) -> str:
    columns = [dict(summary_rows(s)) for s in summaries]
    head = "<tr><th></th>" + "".join(f"<th>{escape(n)}</th>" for n in names) + "</tr>"
    rows = list(dict.fromkeys(label for col in columns for label in col))
    body = "".join(
        f"<tr><th>{escape(r)}</th>"
        + "".join(f'<td class="n">{escape(c.get(r, ""))}</td>' for c in columns)
        + "</tr>"
        for r in rows
    )
    return f'<table id="compare-table">{head}{body}</table>'


def write(runs: list[RunData], out_dir: Path) -> CompareResult:
    """The page, written atomically to out_dir/compare.html."""
    run_ids = [d.run.run_id for d in runs]
    names = labels(run_ids)
    summaries = [summarize(d) for d in runs]
    clock = _axis(runs)
    sections, drawn, missing = [], [], []
    for i, (name, lines) in enumerate(overlays(runs, names).items(), start=1):
        title = COMPARE_FIGURES[name][0]
        sections.append(f'<section id="{name}"><h2>{i}. {escape(title)}</h2>')
        if lines:
            sections.append(
                f'<img src="data:image/png;base64,{_png(draw(name, lines, clock))}" alt="{escape(title)}">'
            )
            drawn.append(name)
        else:
            missing.append(f"{name}: no run has the data for it yet")
            sections.append(
                f'<p class="missing">missing: no run has the data for {escape(title.lower())} yet</p>'
            )
        sections.append("</section>")
    sections.append(
        f'<section id="summary"><h2>{len(COMPARE_FIGURES) + 1}. Summaries</h2>{_table(summaries, names)}</section>'
    )
    title = "spotrain compare: " + ", ".join(run_ids)
    html = out_dir / "compare.html"
    tmp = html.with_suffix(".html.tmp")
    tmp.write_text(
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{_CSS}</style></head><body><h1>{escape(title)}</h1><p>made {_utc(runs[0].now)} UTC; one "
        f"colour a run</p>{''.join(sections)}</body></html>\n",
        encoding="utf-8",
    )
    tmp.replace(html)
    return CompareResult(html, list(run_ids), drawn, missing)
