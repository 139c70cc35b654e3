"""The detached dry-run's Capacity Rebalancing (issue 15, Done when line 2): on the member's rebalance
recommendation the stand-in launches the replacement first, in another zone; its supervisor finds the
at-risk attempt live in the ledger and starts its trainer warm (onboard/standby.py), which goes only
once that attempt ended. Pinned to steps: the at-risk trainer holds after its rebalance checkpoint
until the replacement is warm (trainer/spot.py's hold), so what the stand-in saw when it delivered the
notice (its RUN.events.jsonl) does not depend on the machine's speed."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from spotrain.cloud.local import stand_in_files as stand_in

from .test_dry_run_detached import attached_view, spotrain

RUN_DEADLINE_S = 240.0


def events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def launch_and_finish(home: Path, *inject: str) -> tuple[str, dict]:
    launched = spotrain(home, "launch", "--dry-run", "--recipe", "digits", "--detach", *inject, "-y")
    assert launched.returncode == 0, launched.stdout + launched.stderr
    run_id = next(w for w in launched.stdout.split() if w.startswith("digits-"))
    deadline = time.monotonic() + RUN_DEADLINE_S
    view = attached_view(home, run_id)
    while view["state"] == "RUNNING" and time.monotonic() < deadline:
        view = attached_view(home, run_id)
    return run_id, view


def run_dir(state_dir: Path, iid: str, run_id: str) -> Path:
    return state_dir / "stand-in" / "instances" / iid / "opt" / "spotrain" / "runs" / run_id


def check_handover(state_dir: Path, run_id: str, view: dict, notice_kind: str, stop_step: int) -> None:
    """Two attempts, the second warm before the notice, one trainer at a time, 0 steps lost."""
    assert view["state"] == "SUCCEEDED", view
    first, second = view["attempts"]
    assert (first["exit_code"], second["exit_code"]) == (75, 0)
    assert first["zone"] != second["zone"]
    assert second["start"] < first["end"]  # launched before the at-risk attempt ended
    deadline = time.monotonic() + 60  # the run's end is in the ledger a moment before the group agrees
    while (view["group"]["desired"], view["group"]["instances"]) != (0, []) and time.monotonic() < deadline:
        view = attached_view(state_dir.parent, view["run"])
    assert view["group"]["desired"] == 0 and view["group"]["instances"] == []

    did = {e["kind"]: e for e in stand_in.recorded(state_dir, run_id)}
    assert did["rebalance"]["instance"] == first["instance_id"]
    assert did["replacement"]["replacement"] == second["instance_id"]
    assert not did["in-service"]["late"]
    notice = did[notice_kind]
    assert notice["instance"] == first["instance_id"] and notice["replacement"] == second["instance_id"]
    # (whether it had already gone by then is a race with the stand-in's poll: `went` is not asserted)
    assert notice["warm"] is not None and notice["warm_pid_alive"]
    assert "torch" in notice["warm"]["imported"]
    assert did["terminate"]["instance"] == first["instance_id"]

    one = events(run_dir(state_dir, first["instance_id"], run_id) / "events.jsonl")
    two_dir = run_dir(state_dir, second["instance_id"], run_id)
    two = events(two_dir / "events.jsonl")
    (stop,) = [e for e in one if e["kind"] == "interruption"]
    assert stop["step"] == stop_step
    assert notice["warm"]["t"] < stop["t"]  # warm, imports done, before the trainer stopped for it
    assert did["in-service"]["t"] < stop["t"]  # the stand-in saw it warm before the stop (the hold)
    go = json.loads((two_dir / "go").read_text())
    assert go["why"] == "stopped" and go["t"] > stop["t"]  # the go once its stop's checkpoint was mirrored
    assert min(e["t"] for e in two if e["kind"] == "start") > max(e["t"] for e in one)
    assert f"resumed from {two_dir}/ckpt/step-{stop_step:06d}" in (two_dir / "train.log").read_text()
    (start,) = [e for e in two if e["kind"] == "start"]
    assert start["step"] == stop_step  # resumed where the at-risk one stopped: 0 steps lost
    steps_one = {e["step"] for e in one if e["kind"] == "step"}
    steps_two = {e["step"] for e in two if e["kind"] == "step"}
    assert max(steps_one) <= stop_step < min(steps_two)  # no step trained twice
    assert start["pid"] == notice["warm"]["pid"]  # the warm process is the one that trained


def kill_stand_in(state_dir: Path) -> None:
    pid = stand_in.stand_in_pid(state_dir)
    if pid is not None:  # its instances end with it
        os.kill(pid, signal.SIGTERM)


@pytest.mark.slow
def test_the_replacement_is_warm_before_the_notice_and_resumes_from_its_step(isolated_env: Path) -> None:
    home, state_dir = isolated_env, isolated_env / "dry-run"
    try:
        run_id, view = launch_and_finish(
            home, "--inject-interruption", "step:30", "--inject-rebalance", "step:20"
        )
        check_handover(state_dir, run_id, view, "notice", stop_step=30)
    finally:
        kill_stand_in(state_dir)


@pytest.mark.slow
def test_a_rebalance_with_no_notice_hands_over_once_the_replacement_is_in_service(isolated_env: Path) -> None:
    """AWS terminates the at-risk instance once its replacement is in service: played as a notice, so
    its trainer stops at the next step after its rebalance checkpoint (it holds there until then)."""
    home, state_dir = isolated_env, isolated_env / "dry-run"
    try:
        run_id, view = launch_and_finish(home, "--inject-rebalance", "step:20")
        check_handover(state_dir, run_id, view, "rebalanced-out", stop_step=21)
    finally:
        kill_stand_in(state_dir)
