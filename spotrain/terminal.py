"""What the CLI shows while it works on a run, and how it exits: the prices table, the launch's live
lines, Ctrl-C (which stops the watching, never the run), the outcome line, the report written at
the end, and the exit status for each way a run ends."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from spotrain.errors import SpotrainError
from spotrain.formats import duration, usd

if TYPE_CHECKING:  # the cloud's records (a dozen dataclasses) only where a command asks the cloud
    from spotrain.cloud import PriceTable


def console():
    """The CLI's console: as wide as the terminal (rich asks it; COLUMNS, else 80, when stdout is not
    one), colour and cursor moves only on a terminal, so piped output is plain lines."""
    from rich.console import Console

    return Console()


def render_prices(table: PriceTable, out_console=None, *, nodes: int = 1) -> None:
    """The zones cheapest first; with `nodes` > 1 a column of what N instances cost an hour there."""
    from rich.table import Table

    many = f"; {nodes} nodes ${nodes * table.on_demand_usd_per_hour:.3f}/h" if nodes > 1 else ""
    out = Table(
        title=f"{table.instance_type} spot prices in {table.region}, cheapest first",
        caption=f"on-demand ${table.on_demand_usd_per_hour:.3f}/h{many} (list price {table.on_demand_as_of}), "
        f"{table.now:%Y-%m-%d %H:%M} UTC",
        caption_justify="left",
    )
    names = [
        "zone",
        "spot $/h",
        *([f"{nodes} x $/h"] if nodes > 1 else []),
        "vs on-demand",
        "24 h low",
        "24 h high",
    ]
    for name in names:
        out.add_column(name, justify="left" if name == "zone" else "right")
    for q in table.zones:
        out.add_row(
            q.zone,
            f"{q.usd_per_hour:.4f}",
            *([f"{nodes * q.usd_per_hour:.4f}"] if nodes > 1 else []),
            f"-{q.discount:.0%}",
            f"{q.low_24h:.4f}",
            f"{q.high_24h:.4f}",
        )
    (out_console or console()).print(out)


def print_event(console):
    """Each event worth a sentence as one plain line (no live display): for callers without a store."""
    from spotrain.render import progress_line

    def show(event: dict) -> None:
        line = progress_line(event)
        if line is not None:
            console.print(line, markup=False, highlight=False, soft_wrap=True)

    return show


@contextlib.contextmanager
def live_view(console, store, run_id: str) -> Iterator[Callable[[dict], None]]:
    """The launch's (and resume's) view of a run, as the `on_event` to pass to the orchestrator: on a
    terminal a spinner with elapsed time while requesting, booting and syncing, one training bar per
    attempt, and the events as sentences above them; plain lines otherwise. Ctrl-C as `watching`."""
    view = RunView(console, store, run_id)
    with watching(console, run_id), view:
        yield view.on_event


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


# ------------------------------------------------------------------------------------ the live view
PHASES = {  # what the spinner says in each state, until an event says more
    "requesting": "requesting a spot instance",
    "provisioning": "booting",
    "training": "waiting for the trainer's first event",
}


@dataclass
class TrainingBar:
    """One attempt's training, as the events tell it: the bar's figures, and its ETA from the rate
    since the attempt's first step (the schedule's end; a target reached earlier ends it sooner)."""

    attempt: int
    epochs: float  # the schedule's length, from the `start` event's config
    epoch: float = 0.0
    step: int | None = None
    loss: float | None = None
    img_per_s: float | None = None
    first: tuple[float, float] | None = None  # (t, epoch) of the attempt's first step event
    eta_s: float | None = None

    def on_step(self, event: dict) -> None:
        self.step, self.loss, self.img_per_s = event.get("step"), event.get("loss"), event.get("img_per_s")
        self.epoch, t = float(event.get("epoch", self.epoch)), float(event.get("t") or time.time())
        if self.first is None:
            self.first = (t, self.epoch)
        elif self.epoch > self.first[1] and t > self.first[0]:
            rate = (self.epoch - self.first[1]) / (t - self.first[0])
            self.eta_s = max(self.epochs - self.epoch, 0.0) / rate

    def header(self) -> str:
        return f"attempt {self.attempt}  epoch {self.epoch:.2f}/{self.epochs:g}"

    def tail(self) -> str:
        eta = duration(self.eta_s) if self.eta_s is not None else "-:--:--"
        return f"{min(self.epoch / self.epochs, 1.0):4.0%}  ETA {eta}" if self.epochs else f"ETA {eta}"

    def figures(self, top1: float | None, usd_so_far: float | None) -> str:
        parts = [
            f"step {self.step if self.step is not None else '-'}",
            f"loss {self.loss:.4f}" if self.loss is not None else "loss -",
            f"top-1 {top1:.1%}" if top1 is not None else "top-1 -",
            f"{self.img_per_s:,.0f} img/s" if self.img_per_s is not None else "- img/s",
            f"{usd(usd_so_far)} so far" if usd_so_far is not None else "$ -",
        ]
        return "  ".join(parts)


class RunView:
    """What `launch` and `resume` show while the run works (see `live_view`). Events come on the
    orchestrator's thread; rich's Live redraws from a thread of its own, from the figures kept here."""

    BILL_EVERY_S = 2.0  # the bill is read from the store; a step every few ms need not re-read it

    def __init__(self, console, store, run_id: str) -> None:
        self.console, self.store, self.run_id = console, store, run_id
        self.interactive = console.is_terminal and not console.is_dumb_terminal
        self.phase: str | None = None
        self.phase_since = time.monotonic()
        self.bar: TrainingBar | None = None
        self.attempt: int | None = None
        self.top1: float | None = None  # the run's latest eval: the model the next attempt resumes
        self.usd_so_far: float | None = None
        self.billed_at = -float("inf")
        self.live = None
        from rich.spinner import Spinner

        self.spinner = Spinner("dots")

    def __enter__(self) -> RunView:
        if self.interactive:
            from rich.live import Live

            self.live = Live(self, console=self.console, refresh_per_second=8, transient=True)
            self.live.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def on_event(self, event: dict) -> None:
        from spotrain.render import progress_line

        line = progress_line(event)
        if line is not None:
            self.console.print(line, markup=False, highlight=False, soft_wrap=True)
        self._follow(event)  # after the sentence: an attempt's ended bar goes under its last event
        if not self.interactive and event.get("kind") == "eval" and self.bar is not None:
            self.console.print(self._plain_bar(), markup=False, highlight=False, soft_wrap=True)
        if self.live is not None:
            self.live.refresh()  # each event drawn as it comes, not at the next tick

    def _follow(self, event: dict) -> None:
        """The view's state from one event: which phase the spinner names, the bar's figures."""
        kind = event.get("kind")
        if event.get("attempt"):
            self.attempt = event["attempt"]
        if kind == "state":
            self._end_bar()
            self._set_phase(PHASES.get(event["to"]))
        elif kind == "launch":
            self._set_phase(f"attempt {event['attempt']}: requesting a spot {event['instance_type']}")
        elif kind == "stage" and event["stage"] != "ready":
            self._set_phase(f"attempt {self.attempt}: booting ({event['stage']})", keep_clock=True)
        elif kind in ("data_ready", "stage"):  # ready: the bundle goes next
            self._set_phase(f"attempt {self.attempt}: syncing the trainer")
        elif kind == "sync":
            self._set_phase(f"attempt {self.attempt}: starting the trainer")
        elif kind == "start":
            epochs = float((event.get("config") or {}).get("epochs") or 0)
            self.bar = TrainingBar(self.attempt or 0, epochs, epoch=float(event.get("epoch") or 0))
            self._set_phase(None)
        elif kind == "step":
            if self.bar is None:  # `resume` of a run already training: its `start` came before us
                self.bar = TrainingBar(self.attempt or 0, self._schedule_epochs())
                self._set_phase(None)
            self.bar.on_step(event)
            self._bill()
        elif kind == "eval":
            self.top1 = event.get("top1", self.top1)
            self._bill(now=True)
        elif kind in ("interruption", "done", "error"):
            self._bill(now=True)
            self._end_bar()

    def _schedule_epochs(self) -> float:
        """The schedule's length from the run's last stored `start` event (0 when none: no bar %)."""
        starts = self.store.events(self.run_id, kinds=["start"]) if self.store is not None else []
        return float((starts[-1].data.get("config") or {}).get("epochs") or 0) if starts else 0.0

    def _set_phase(self, phase: str | None, *, keep_clock: bool = False) -> None:
        if phase in (PHASES["provisioning"], PHASES["training"]) and self.attempt:
            phase = f"attempt {self.attempt}: {phase}"
        if not keep_clock or self.phase is None:
            self.phase_since = time.monotonic()
        self.phase = phase

    def _bill(self, *, now: bool = False) -> None:
        """$ so far from cost.py's bill, the one owner of the price (at most every BILL_EVERY_S)."""
        if not now and time.monotonic() - self.billed_at < self.BILL_EVERY_S:
            return
        from spotrain.cost import run_bill

        try:
            self.usd_so_far = run_bill(self.store, self.run_id).cost.total_usd
        except SpotrainError:  # no price in force yet: the bar shows no $ rather than failing
            return
        self.billed_at = time.monotonic()

    def _end_bar(self) -> None:
        """An attempt's bar stays above as it ended (one bar per attempt); the next one starts anew."""
        if self.bar is None:
            return
        if self.live is not None:
            self.console.print(self._bar_renderable(static=True))
        else:  # a log keeps where each attempt got to
            self.console.print(self._plain_bar(), markup=False, highlight=False, soft_wrap=True)
        self.bar = None

    def _plain_bar(self) -> str:
        """The bar as one line of a log: `attempt 1: epoch 0.91 of 3, step 20, loss ..., ETA 0:00:03`."""
        b = self.bar
        figures = ", ".join(b.figures(self.top1, self.usd_so_far).split("  "))
        return (
            f"attempt {b.attempt}: epoch {b.epoch:.2f} of {b.epochs:g}, {figures}, {b.tail().split('  ')[-1]}"
        )

    def _bar_renderable(self, *, static: bool = False):
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        b = self.bar
        head = Table.grid(padding=(0, 1), expand=True)
        head.add_column(no_wrap=True)
        head.add_column(ratio=1)
        head.add_column(no_wrap=True, justify="right")
        done = min(b.epoch, b.epochs) if b.epochs else 0
        head.add_row(Text(b.header()), ProgressBar(total=b.epochs or 1, completed=done), Text(b.tail()))
        figures = b.figures(self.top1, self.usd_so_far) + ("  (attempt ended)" if static else "")
        return Group(head, Text("  " + figures))

    def __rich__(self):
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        parts = []
        if self.phase is not None:
            line = Table.grid(padding=(0, 1))
            line.add_row(self.spinner, Text(f"{self.phase}  {duration(time.monotonic() - self.phase_since)}"))
            parts.append(line)
        if self.bar is not None:
            parts.append(self._bar_renderable())
        return Group(*parts)
