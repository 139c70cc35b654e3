"""Interruptions on a dry-run instance, with the real trainer running there as the orchestrator starts
it: the notice reaches it through its own IMDS, it checkpoints and exits 75, and then the instance ends
with the spot reason. Pinned to a step (or a share of the steps), it lands at exactly that step."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import read_events, wait_for

from spotrain.cloud import EndKind
from spotrain.cloud.local import LocalCloud
from spotrain.cloud.local.imds import EventsProgress, Schedule
from spotrain.remote import connect

from .local_helpers import exit_code, launch, start_trainer


def test_injected_notice_stops_the_trainer_then_the_instance_ends(cloud: LocalCloud) -> None:
    started = launch(cloud)
    inst = started.instance
    env = cloud.instance_env(inst.instance_id)
    assert env["SPOTRAIN_IMDS_URL"].startswith("http://127.0.0.1:")
    assert (
        connect(cloud.target(started)).exec("echo $SPOTRAIN_IMDS_URL").stdout.decode().strip()
        == env["SPOTRAIN_IMDS_URL"]
    )
    # A schedule far longer than the test: the trainer must not finish before the notice reaches it.
    _, run = start_trainer(cloud, started, "--max-epochs", "50", "--target-acc", "1.0")
    wait_for(lambda: any(e["kind"] == "step" for e in read_events(run / "events.jsonl")), 15, "a first step")
    assert cloud.describe(inst.region, inst.instance_id).end is EndKind.RUNNING
    cloud.inject_interruption(inst.instance_id)
    assert wait_for(lambda: exit_code(run) is not None, 10, "the trainer to exit") and exit_code(run) == 75
    kinds = [e["kind"] for e in read_events(run / "events.jsonl")]
    assert "interruption" in kinds and "checkpoint" in kinds
    ended = wait_for(
        lambda: (s := cloud.describe(inst.region, inst.instance_id)).state == "terminated" and s,
        3,
        "the reclaim",
    )
    assert ended.end is EndKind.SPOT_INTERRUPTION and ended.reason_code == "Server.SpotInstanceTermination"
    assert cloud.find_instances("run1") == []


def test_pinned_injection_stops_at_that_step_then_the_instance_is_reclaimed(cloud: LocalCloud) -> None:
    started = launch(cloud)
    inst = started.instance
    at = "step:40"
    env = cloud.injection_env(at)
    assert env == {"SPOTRAIN_NOTICE_AT": "step:40"}
    schedule = cloud.schedule_interruption(inst.instance_id, at, "spotrain/runs/run1/events.jsonl")
    assert schedule.pinned and schedule.step == 40
    _, run = start_trainer(cloud, started, "--max-epochs", "50", "--target-acc", "1.0", env=env)
    assert wait_for(lambda: exit_code(run) is not None, 18, "the trainer to exit") and exit_code(run) == 75
    stop = next(e for e in read_events(run / "events.jsonl") if e["kind"] == "interruption")
    assert (stop["step"], stop["source"]) == (40, "injected")
    assert max(e["step"] for e in read_events(run / "events.jsonl") if e["kind"] == "step") <= 40
    ended = wait_for(
        lambda: (s := cloud.describe(inst.region, inst.instance_id)).state == "terminated" and s,
        5,
        "the reclaim",
    )
    assert ended.end is EndKind.SPOT_INTERRUPTION


def test_progress_reads_seconds_and_injected_stops_from_events(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    progress = EventsProgress(path)
    assert not progress.due(Schedule.parse("20s"))  # no file yet
    lines = [
        {"t": 1000.0, "kind": "start", "config": {"epochs": 4}},
        {"t": 1001.0, "kind": "step", "step": 1, "epoch": 0.1},
        {"t": 1030.0, "kind": "eval", "step": 90, "epoch": 1.0},
    ]
    path.write_text("".join(json.dumps(e) + "\n" for e in lines) + '{"t": 1040, "kind": "in')  # a torn line
    assert progress.due(Schedule.parse("20s"), now=1021.0)
    assert not progress.due(Schedule.parse("20s"), now=1020.0)
    assert not progress.due(Schedule.parse("step:90")) and not progress.due(Schedule.parse("25%"))
    with path.open("a") as f:
        f.write('terruption", "source": "injected", "step": 90}\n')
    assert progress.due(Schedule.parse("step:90")) and progress.due(Schedule.parse("25%"))


def test_schedule_forms() -> None:
    assert Schedule.parse("step:30").step == 30 and Schedule.parse("STEP:30").pinned
    assert Schedule.parse("50%").share == 0.5 and Schedule.parse("50%").pinned
    assert Schedule.parse("20s").seconds == 20 and not Schedule.parse("20s").pinned
