"""Secret-looking env values through a whole dry-run: interrupted, then resumed by a new controller.
Neither value is ever in state.db, yet the trainer has both on attempt 1 and on attempt 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from spotrain import trainer_watch
from spotrain.config import load_spec
from spotrain.controller import create_run, prepare
from spotrain.store import RunState
from spotrain.workspace import controller_for_run, open_controller

ENV = {"DB_PASS": "pa55-x1", "HF_AUTH": "au7h-y2", "WANDB_API_KEY": "k3y-z3", "LR_NOTE": "plain"}


def trainer_environ(pid: int) -> dict[str, str]:
    """The trainer's environment as its kernel keeps it; read at start, while torch still imports."""
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(p.split("=", 1) for p in raw.decode().split("\0") if "=" in p)


def test_secrets_reach_every_attempt_and_never_the_state_db(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    seen: list[dict[str, str]] = []
    real_start = trainer_watch.start_trainer  # warm or cold, the trainer's process

    def start_and_look(*args, **kwargs):
        started = real_start(*args, **kwargs)
        seen.append(trainer_environ(started.pid))
        return started

    monkeypatch.setattr(trainer_watch, "start_trainer", start_and_look)
    flags = {
        "recipe": "digits",
        "dry_run": True,
        "inject_interruptions": ["50%"],
        "boot_delay_s": 0.2,
        "max_epochs": 1,  # a short schedule: this test is about the environment, not the training
        "env": ENV,
    }
    spec = load_spec(None, flags, {})
    with open_controller(dry_run=True, boot_delay_s=0.2) as ctl:
        spec, plan = prepare(ctl, spec)
        run_id = create_run(ctl, spec, plan)
        first = ctl.orchestrator().drive(run_id)
        state_dir = ctl.state_dir
    assert first.state == RunState.INTERRUPTED, first.reason
    waiting = (state_dir / "secrets" / f"{run_id}.json").exists()
    with controller_for_run(run_id) as ctl:  # `spotrain resume` in a new process: only the disk remains
        second = ctl.orchestrator().resume(run_id)
    assert second.state == RunState.SUCCEEDED, second.reason
    assert len(seen) == 2
    for environ in seen:
        assert {k: environ.get(k) for k in ENV} == ENV
    kept = b"".join(p.read_bytes() for p in state_dir.rglob("*") if p.is_file())
    for value in ("pa55-x1", "au7h-y2", "k3y-z3"):
        assert value.encode() not in kept  # state.db, its WAL, kept logs, the instances, moto
    assert waiting and not (state_dir / "secrets" / f"{run_id}.json").exists()  # gone with the run
