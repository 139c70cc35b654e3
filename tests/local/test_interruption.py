"""Interruptions on a dry-run instance, with the real trainer running there as the orchestrator starts
it: the notice reaches it through its own IMDS, it checkpoints and exits 75, and then the instance ends
with the spot reason. Scheduled by share of the schedule, it fires at about that share."""

from __future__ import annotations

import json
import time
from pathlib import Path

from spotrain.cloud import EndKind
from spotrain.cloud.local import LocalCloud
from spotrain.cloud.local_imds import EventsProgress, Schedule

from .local_helpers import events, exit_code, launch, start_trainer, wait_for


def test_injected_notice_stops_the_trainer_then_the_instance_ends(cloud: LocalCloud) -> None:
    started = launch(cloud)
    inst = started.instance
    env = cloud.instance_env(inst.instance_id)
    assert env["SPOTRAIN_IMDS_URL"].startswith("http://127.0.0.1:")
    assert (
        cloud.transport(started).exec("echo $SPOTRAIN_IMDS_URL").stdout.decode().strip()
        == env["SPOTRAIN_IMDS_URL"]
    )
    # A schedule far longer than the test: the trainer must not finish before the notice reaches it.
    _, run = start_trainer(cloud, started, "--max-epochs", "50", "--target-acc", "1.0")
    wait_for(lambda: any(e["kind"] == "step" for e in events(run / "events.jsonl")), 15, "a first step")
    assert cloud.describe(inst.region, inst.instance_id).end is EndKind.RUNNING
    t0 = time.monotonic()
    cloud.inject_interruption(inst.instance_id)
    assert wait_for(lambda: exit_code(run) is not None, 10, "the trainer to exit") and exit_code(run) == 75
    assert time.monotonic() - t0 < 5
    kinds = [e["kind"] for e in events(run / "events.jsonl")]
    assert "interruption" in kinds and "checkpoint" in kinds
    ended = wait_for(
        lambda: (s := cloud.describe(inst.region, inst.instance_id)).state == "terminated" and s,
        3,
        "the reclaim",
    )
    assert ended.end is EndKind.SPOT_INTERRUPTION and ended.reason_code == "Server.SpotInstanceTermination"
    assert cloud.find_instances("run1") == []


def test_schedule_at_half_fires_at_about_half(cloud: LocalCloud) -> None:
    started = launch(cloud)
    schedule = cloud.schedule_interruption(
        started.instance.instance_id, "50%", "spotrain/runs/run1/events.jsonl"
    )
    assert schedule.share == 0.5
    _, run = start_trainer(cloud, started, "--max-epochs", "4", "--target-acc", "0.9999")
    assert wait_for(lambda: exit_code(run) is not None, 18, "the trainer to exit") and exit_code(run) == 75
    evs = events(run / "events.jsonl")
    epochs = next(e for e in evs if e["kind"] == "start")["config"]["epochs"]
    last = max(e["epoch"] for e in evs if e["kind"] == "step")
    assert 0.5 <= last / epochs <= 0.7, (last, epochs)


def test_progress_reads_seconds_and_shares_from_events(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    progress = EventsProgress(path)
    assert not progress.due(Schedule.parse("20s"))  # no file yet
    lines = [
        {"t": 1000.0, "kind": "start", "config": {"epochs": 4}},
        {"t": 1001.0, "kind": "step", "step": 1, "epoch": 0.1},
        {"t": 1030.0, "kind": "eval", "step": 90, "epoch": 1.0},
    ]
    path.write_text("".join(json.dumps(e) + "\n" for e in lines) + '{"t": 1040, "kind": "st')  # a torn line
    assert progress.due(Schedule.parse("20s"), now=1021.0)
    assert not progress.due(Schedule.parse("20s"), now=1020.0)
    assert progress.due(Schedule.parse("25%")) and not progress.due(Schedule.parse("26%"))
    with path.open("a") as f:
        f.write('ep", "step": 150, "epoch": 2.2}\n')
    assert progress.due(Schedule.parse("55%"))
