"""The report's one HTML page: six figures and the summary table, the PNGs embedded as base64 data URIs, no external resource
(no script, no font, no stylesheet link), so the file can be mailed or opened offline."""

from __future__ import annotations

import base64
import datetime as dt
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

from spotrain.formats import usd

if TYPE_CHECKING:
    from spotrain.report.data import RunData

DPI = 100
# name -> (section title, figure size in inches); a PNG is exactly size x DPI pixels.
FIGURES: dict[str, tuple[str, tuple[float, float]]] = {
    "accuracy": ("Accuracy against wall-clock time and dollars", (12.0, 4.5)),
    "throughput": ("Throughput over time", (10.0, 3.5)),
    "spend": ("Cumulative dollars: spot against on demand", (10.0, 3.5)),
    "schedule": ("Loss, learning rate and momentum against step", (10.0, 6.0)),
    "attempts": ("Attempts", (10.0, 3.5)),
    "prices": ("Spot price in each zone used", (10.0, 4.0)),
}
SUMMARY = "Summary"  # the last section: an HTML table, not a figure

_CSS = """body{font-family:system-ui,sans-serif;max-width:1240px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}img{max-width:100%;height:auto}
.missing{color:#a33;font-style:italic}.note{color:#555}"""

_CAPTIONS = {
    "accuracy": "Eval accuracy against wall-clock time (left) and against dollars spent (right, cost.py's "
    "rule: spot + EBS, each attempt billed at least a minute). Shaded: each attempt's life; red lines: "
    "interruption notices; dotted: the target; star: the first eval that reached it. The curve breaks "
    "between attempts: no eval happened while no instance trained.",
    "throughput": "Training images per second of each step event (the time between step events, "
    "training only), one colour per attempt, against wall-clock.",
    "spend": "Spot + EBS dollars spent by each second (cost.py's rules: billed from each attempt's start, "
    "at least 60 s), against the same instance-seconds at the on-demand price (dashed); S3 is the "
    "same in both and left out.",
    "schedule": "Training loss (top), learning rate and momentum (bottom) against step, one colour per "
    "attempt; a thick line where an attempt resumes from a checkpoint, dotted where a notice stopped one.",
    "attempts": "One bar per instance, in its attempt's colour: requested (faint), booting and sync, trainer "
    "running (from its `start` event); its zone, end reason and spot + EBS dollars at the left. Time starts "
    "at the first instance's start, so attempt 1's request before it is cut.",
    "prices": "The spot price in force in each zone the run used over the run's own span, from the stored "
    "price history; thick, in the attempt's colour, while an attempt's instance ran; dotted, in its colour, "
    "the rest of its 60 s minimum billed after it ended (past the run's end not drawn); dashed: the "
    "on-demand price.",
}


def _utc(t: float | None) -> str:
    if t is None:
        return ""
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{escape(alt)}">'


def _missing(d: RunData, name: str) -> str:
    return "".join(f'<p class="missing">missing: {escape(w)}</p>' for w in d.missing.get(name, []))


def _attempts_table(d: RunData) -> str:
    if not d.attempts:
        return ""
    costs = d.attempt_costs()
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "#",
            "zone",
            "instance",
            "start (UTC)",
            "end (UTC)",
            "billed s",
            "end reason",
            "steps",
            "spot $",
            "EBS $",
        )
    )
    body = []
    for a, c in zip(d.attempts, costs, strict=True):
        steps = f"{a.resumed_from_step or 0} .. {a.last_step if a.last_step is not None else '?'}"
        money = ["", "", ""] if c is None else [str(c.billed_s), usd(c.spot_usd), usd(c.ebs_usd)]
        cells = [
            str(a.number),
            a.zone,
            a.instance_type,
            _utc(a.started_at or a.requested_at),
            _utc(a.ended_at),
            money[0],
            a.end_reason or "running",
            steps,
            money[1],
            money[2],
        ]
        body.append(
            "<tr>"
            + "".join(
                f'<td class="n">{escape(v)}</td>' if i in (0, 5, 8, 9) else f"<td>{escape(v)}</td>"
                for i, v in enumerate(cells)
            )
            + "</tr>"
        )
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _summary_table(rows: list[tuple[str, str]]) -> str:
    body = "".join(f'<tr><th>{escape(k)}</th><td class="n">{escape(v)}</td></tr>' for k, v in rows)
    return f'<table id="summary-table">{body}</table>'


def page(d: RunData, rows: list[tuple[str, str]], pngs: dict[str, Path]) -> str:
    """The whole HTML document."""
    sections = []
    for i, (name, (title, _)) in enumerate(FIGURES.items(), start=1):
        parts = [f'<section id="{name}"><h2>{i}. {escape(title)}</h2>']
        if name in pngs:
            parts.append(_img(pngs[name], title))
            parts.append(f'<p class="note">{escape(_CAPTIONS[name])}</p>')
        if name == "attempts":
            parts.append(_attempts_table(d))
        parts.append(_missing(d, name))
        parts.append("</section>")
        sections.append("".join(parts))
    sections.append(
        f'<section id="summary"><h2>{len(FIGURES) + 1}. {SUMMARY}</h2>{_summary_table(rows)}'
        '<p class="note">Dollars and seconds are those of <code>spotrain cost --json</code>; '
        "lost work: steps done before each notice less the step the next attempt resumed at.</p>"
        f"{_missing(d, 'summary')}</section>"
    )
    run = d.run
    title = f"spotrain report: {run.run_id}"
    header = (
        f"<h1>{escape(title)}</h1><p>{escape(str(run.spec.recipe))} on {escape(str(run.spec.instance))}"
        f"{' (dry-run)' if run.dry_run else ''}; state {escape(run.state.value)}"
        f"{': ' + escape(run.end_reason) if run.end_reason else ''}; made {_utc(d.now)} UTC</p>"
    )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{_CSS}</style></head><body>{header}{''.join(sections)}</body></html>\n"
    )
