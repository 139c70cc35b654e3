"""What the CLI shows while it works on a run, and how it exits: the prices table, the launch's live
lines, Ctrl-C (which stops the watching, never the run), the outcome line, the report written at
the end, and the exit status for each way a run ends."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from spotrain.cloud import PriceTable
from spotrain.errors import SpotrainError


def render_prices(table: PriceTable, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    out = Table(
        title=f"{table.instance_type} spot prices in {table.region}, cheapest first",
        caption=f"on-demand ${table.on_demand_usd_per_hour:.3f}/h (list price {table.on_demand_as_of}), "
        f"{table.now:%Y-%m-%d %H:%M} UTC",
        caption_justify="left",
    )
    for name in ("zone", "spot $/h", "vs on-demand", "24 h low", "24 h high"):
        out.add_column(name, justify="left" if name == "zone" else "right")
    for q in table.zones:
        out.add_row(
            q.zone,
            f"{q.usd_per_hour:.4f}",
            f"-{q.discount:.0%}",
            f"{q.low_24h:.4f}",
            f"{q.high_24h:.4f}",
        )
    (console or Console(width=100)).print(out)


def print_event(console):
    from spotrain.render import progress_line

    def show(event: dict) -> None:
        line = progress_line(event)
        if line is not None:
            console.print(line, markup=False, highlight=False, soft_wrap=True)

    return show


EXIT_FAILED, EXIT_CANCELLED, EXIT_INTERRUPTED, EXIT_CTRL_C = 1, 3, 75, 130


@contextlib.contextmanager
def watching(console, run_id: str) -> Iterator[None]:
    """Ctrl-C stops the watching, not the run: say so, and how to go on; exit 130 (128 + SIGINT)."""
    try:
        yield
    except KeyboardInterrupt:
        console.print(
            f"\nstopped watching; run {run_id} goes on without this terminal.\n"
            f"  watch it:   spotrain logs {run_id} -f   (or spotrain status {run_id})\n"
            f"  resume it:  spotrain resume {run_id}   (watches it again; relaunches after an interruption)\n"
            f"  stop it:    spotrain down {run_id}",
            markup=False,
            highlight=False,
        )
        sys.exit(EXIT_CTRL_C)


def exit_for(outcome) -> None:
    """0 succeeded; 75 interrupted and waiting for `spotrain resume`; 1 failed; 3 cancelled (by
    `spotrain down`, from here or another terminal)."""
    from spotrain.store import RunState

    if outcome.state == RunState.INTERRUPTED:
        sys.exit(EXIT_INTERRUPTED)
    if outcome.state == RunState.CANCELLED:
        sys.exit(EXIT_CANCELLED)
    if outcome.state != RunState.SUCCEEDED:
        sys.exit(EXIT_FAILED)


def outcome_line(run_id: str, outcome) -> str:
    from spotrain.store import RunState

    if outcome.state == RunState.CANCELLED:
        return f"run {run_id}: {outcome.reason}"
    return f"run {run_id}: {outcome.state.value} ({outcome.reason})"


def print_report(console, ctl, run_id: str) -> None:
    """The run's report into STATE/reports/RUN; a missing matplotlib is a message, the run is done."""
    from spotrain.report import build_report

    try:
        done = build_report(ctl.store, run_id, ctl.state_dir / "reports" / run_id)
    except SpotrainError as err:
        console.print(f"report not written: {err}", markup=False, highlight=False, soft_wrap=True)
        return
    console.print(f"report: {done.html}", markup=False, highlight=False, soft_wrap=True)
