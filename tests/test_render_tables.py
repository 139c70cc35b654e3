"""The tables in an 80-column terminal: the cost table's columns hold what their headers say and its
total row adds them up; the status table keeps the run id whole; the live view's ETA and plain line."""

from __future__ import annotations

import io
from types import SimpleNamespace

from rich.console import Console

from spotrain.cost import AttemptCost, Bill, RunCost, RunUsage, S3Usage
from spotrain.render import cost_table, status_table
from spotrain.terminal import RunView, TrainingBar


def _lines(renderable, width: int = 80) -> list[str]:
    console = Console(file=io.StringIO(), width=width)
    console.print(renderable)
    return [line.rstrip() for line in console.file.getvalue().splitlines()]


def _two_attempts() -> Bill:
    record = SimpleNamespace  # the store's AttemptRecord: the fields the table reads
    records = (
        record(number=1, zone="us-east-1a", instance_type="g4dn.xlarge", end_reason="spot-interruption"),
        record(number=2, zone="us-east-1d", instance_type="g4dn.xlarge", end_reason="finished"),
    )
    usage = RunUsage(
        "digits-20261204-0325-bc59", records, (), (), (), S3Usage(), 0.98, "top1", 0.0, 100.0, 100.0
    )
    cost = RunCost(
        attempts=[
            AttemptCost("r-1", "us-east-1a", 60, 0.0012, 0.0002, 0.0088),
            AttemptCost("r-2", "us-east-1d", 90, 0.0027, 0.0003, 0.0131),
        ],
        s3_usd=0.0001,
        gpu_hours=0.042,
    )
    return Bill(usage, cost)


def test_the_cost_tables_total_row_is_the_sum_of_each_column_in_80_columns() -> None:
    lines = _lines(cost_table(_two_attempts()))
    assert max(len(line) for line in lines) <= 80
    assert lines[0] == "cost of digits-20261204-0325-bc59 on g4dn.xlarge"  # one type: named once
    (total,) = [line for line in lines if line.startswith("total ")]
    # billed 60 + 90 s; spot, EBS and on-demand each the sum of the rows above (no EBS or S3 in on-demand)
    assert total.split() == ["total", "0:02:30", "$0.0039", "$0.0005", "$0.0219"]
    text = "\n".join(lines)
    assert "wall 0:01:40, 0.042 GPU-h; S3 $0.0001" in text  # not under a column that means other things
    assert "all in $0.0045 vs $0.0225 on demand (EBS and S3 in both)" in text


def test_the_status_table_keeps_the_run_id_whole_in_80_columns() -> None:
    row = {
        "run": "imagenet-20261204-0325-bc59",
        "state": "interrupted",
        "instance": "p3.16xlarge",
        "attempts": 12,
        "epoch": 23.5,
        "best_top1": 0.9412,
        "usd": 123.4567,
        "dry_run": True,
    }
    lines = _lines(status_table([row]))
    assert max(len(line) for line in lines) <= 80
    (shown,) = [line for line in lines if line.startswith(row["run"])]
    assert shown.split() == [row["run"], "interrupted*", "p3.16xlarge", "12", "23.50", "94.1%", "$123.4567"]


def test_the_training_bars_eta_is_the_schedule_left_at_the_rate_since_the_attempts_first_step() -> None:
    bar = TrainingBar(attempt=2, epochs=3)
    bar.on_step({"step": 10, "epoch": 0.5, "loss": 1.2, "img_per_s": 900.0, "t": 100.0})
    assert bar.eta_s is None  # one step: no rate yet
    bar.on_step({"step": 20, "epoch": 1.0, "loss": 0.8, "img_per_s": 1000.0, "t": 110.0})
    assert bar.eta_s == 40.0  # 2 epochs left at 0.05 epoch/s
    assert bar.tail() == " 33%  ETA 0:00:40"
    assert bar.figures(0.761, 0.0031) == "step 20  loss 0.8000  top-1 76.1%  1,000 img/s  $0.0031 so far"


def test_piped_the_view_prints_sentences_and_a_progress_line_per_eval() -> None:
    console = Console(file=io.StringIO(), width=80)  # not a terminal: no Live, no escapes
    view = RunView(console, store=None, run_id="r")
    view._bill = lambda *, now=False: None  # the $ comes from cost.py's bill; no store in this test
    with view:
        for event in (
            {
                "source": "controller",
                "kind": "launch",
                "attempt": 1,
                "instance_type": "g4dn.xlarge",
                "demoted": [],
            },
            {
                "source": "trainer",
                "kind": "start",
                "attempt": 1,
                "config": {"epochs": 3},
                "epoch": 0,
                "world_size": 1,
                "device": "cpu",
            },
            {
                "source": "trainer",
                "kind": "step",
                "attempt": 1,
                "step": 5,
                "epoch": 0.5,
                "loss": 0.5,
                "img_per_s": 10.0,
                "t": 1.0,
            },
            {"source": "trainer", "kind": "eval", "attempt": 1, "epoch": 1.0, "top1": 0.5},
            {"source": "trainer", "kind": "done", "attempt": 1, "step": 5, "reason": "target"},
        ):
            view.on_event(event)
    out = console.file.getvalue()
    assert "\x1b" not in out and "\r" not in out
    assert out.splitlines() == [
        "attempt 1: requesting a spot g4dn.xlarge",
        "attempt 1: trainer started on cpu x1, fresh start",
        "attempt 1: eval at epoch 1.00: top-1 50.00%",
        "attempt 1: epoch 0.50 of 3, step 5, loss 0.5000, top-1 50.0%, 10 img/s, $ -, ETA -:--:--",
        "attempt 1: trainer done at step 5: target reached",
        "attempt 1: epoch 0.50 of 3, step 5, loss 0.5000, top-1 50.0%, 10 img/s, $ -, ETA -:--:--",
    ]


def test_a_step_before_any_start_event_still_gets_a_bar() -> None:
    """`resume` of a run already training: the trainer's `start` came before this terminal watched."""
    view = RunView(Console(file=io.StringIO(), width=80), store=None, run_id="r")
    view._bill = lambda *, now=False: None
    view.on_event({"source": "controller", "kind": "state", "to": "training", "reason": "adopted"})
    view.on_event(
        {"source": "trainer", "kind": "step", "attempt": 3, "step": 7, "epoch": 0.2, "loss": 1.0, "t": 1.0}
    )
    assert view.phase is None and view.bar is not None and (view.bar.attempt, view.bar.step) == (3, 7)


def _status_row(run: str, state: str, dry_run: bool, **figures) -> dict:
    row = {"run": run, "state": state, "instance": "g4dn.xlarge", "attempts": 1, "dry_run": dry_run}
    return {**row, "epoch": None, "best_top1": None, "usd": None, **figures}


def test_status_piped_is_rich_s_table_character_for_character_without_rich() -> None:
    import io

    from spotrain.render import status_text

    finished = _status_row(
        "digits-20261204-0001-0001", "succeeded", True, epoch=9.95, best_top1=0.8, usd=0.0123
    )
    cases = [
        [],  # no runs: the headers alone
        [_status_row("digits-20261204-0002-0002", "training", False)],  # no dry-run: no caption
        [finished, _status_row("imagenet-20261204-0325-bc59", "interrupted", False, usd=123.4567)],
    ]
    for rows in cases:
        for width in (79, 80, 120):  # 79: the widest case fills it exactly
            console = Console(file=io.StringIO(), width=width)
            console.print(status_table(rows))
            assert status_text(rows, width) == console.file.getvalue().rstrip("\n"), (rows, width)
    assert status_text(cases[2], 78) is None  # a column too wide: rich wraps it (status_table draws)
