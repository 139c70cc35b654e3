"""The warm trainer start in the dry-run: after an interruption, the next attempt's trainer runs in the
warm process started on its new instance (same pid as the trainer's own `start` event), and with
SPOTRAIN_WARM_START=0 it starts cold as before. Driven in-process, as test_interruption_timing."""

from __future__ import annotations

import pytest

from spotrain.config import load_spec
from spotrain.controller import create_run, prepare
from spotrain.store import RunState
from spotrain.workspace import open_controller


def interrupted_once(monkeypatch: pytest.MonkeyPatch, warm: str) -> tuple:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("SPOTRAIN_WARM_START", warm)
    flags = {
        "recipe": "digits",
        "dry_run": True,
        "auto_resume": True,
        "boot_delay_s": 0.2,
        "inject_interruptions": ["step:30"],
    }
    with open_controller(dry_run=True, boot_delay_s=0.2) as ctl:
        spec, plan = prepare(ctl, load_spec(None, flags))
        run_id = create_run(ctl, spec, plan)
        outcome = ctl.orchestrator().drive(run_id)
        assert outcome.state == RunState.SUCCEEDED, outcome.reason
        started = {e.attempt: e.data for e in ctl.store.events(run_id, kinds=["trainer_start"])}
        trainers = {e.attempt: e.data for e in ctl.store.events(run_id, kinds=["start"])}
        resumed = ctl.store.attempts(run_id)[1].resumed_from_step
    return started, trainers, resumed


def test_the_resumed_trainer_starts_in_the_warm_process(monkeypatch: pytest.MonkeyPatch) -> None:
    started, trainers, resumed = interrupted_once(monkeypatch, "1")

    assert sorted(started) == [1, 2]
    for attempt in (1, 2):
        assert started[attempt]["warm"] is True, started[attempt]
        assert started[attempt]["pid"] == trainers[attempt]["pid"]  # the trainer ran in that process
    assert resumed == 30  # the warm trainer resumed from the checkpoint the interruption saved


def test_the_warm_start_off_starts_the_trainer_cold(monkeypatch: pytest.MonkeyPatch) -> None:
    started, trainers, _ = interrupted_once(monkeypatch, "0")

    assert [started[a]["warm"] for a in (1, 2)] == [False, False]
    assert started[2]["why"] == "no warm process" and started[2]["pid"] == trainers[2]["pid"]
