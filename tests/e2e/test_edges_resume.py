"""Resume at the edges (issue 11, item 2): the controller dies just after starting the trainer, so the
trainer looks for its checkpoints in an S3 that is gone (the dry-run's S3 lives in the controller).
That is the infrastructure, not the run: the trainer waits for S3, and `spotrain resume` finishes it."""

from __future__ import annotations

import json
import time
from pathlib import Path

from spotrain.store import RunState, Store

from . import cli


def trainer_events(home: Path, run_id: str) -> list[dict]:
    found = []
    for path in (home / "dry-run" / "instances").glob(f"*/spotrain/runs/{run_id}/events.jsonl"):
        for line in path.read_text().splitlines():
            try:
                found.append(json.loads(line))
            except ValueError:
                continue  # a line being written
    return found


def test_killed_right_after_the_trainer_started_resumes_and_finishes(tmp_path: Path) -> None:
    home = tmp_path / "home"
    killed = cli.spotrain(*cli.DEMO, home=home, env={"SPOTRAIN_CRASH_AT": "started"})
    assert killed.returncode == -9, killed.stdout[-2000:] + killed.stderr[-2000:]
    with Store.open(home / "dry-run") as store:
        (run,) = store.list_runs()
    # Wait (with a deadline) until the trainer has met the missing S3: it warns and waits (fixed), or
    # fails with an error (the bug). Resuming earlier would race the trainer's start.
    deadline = time.monotonic() + 90
    met = []
    while time.monotonic() < deadline and not met:
        met = [e for e in trainer_events(home, run.run_id) if e["kind"] in ("warning", "error", "start")]
        time.sleep(0.1)
    assert met and met[0]["kind"] == "warning" and "retrying" in met[0]["message"], met
    resumed = cli.spotrain("resume", run.run_id, home=home)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    with Store.open(home / "dry-run") as store:
        assert store.get_run(run.run_id).state == RunState.SUCCEEDED
        assert max(e.data["top1"] for e in store.events(run.run_id, kinds=["eval"])) >= 0.98


def test_a_trainer_that_cannot_reach_s3_is_started_again_then_the_run_waits(monkeypatch) -> None:
    """S3 never answers (the mirror points at a closed port): each start exits 69; the attempt starts
    the trainer again MAX_RESTARTS times, then ends, and the run is INTERRUPTED (resumable), not FAILED."""
    from spotrain import orchestrator
    from spotrain.config import load_spec
    from spotrain.controller import create_run, prepare
    from spotrain.workspace import open_controller

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    with open_controller(dry_run=True, boot_delay_s=0.1) as ctl:
        spec, plan = prepare(ctl, load_spec(None, {"recipe": "digits", "dry_run": True}))
        run_id = create_run(ctl, spec, plan)
        real_env = ctl.cloud.instance_env
        monkeypatch.setattr(
            ctl.cloud,
            "instance_env",
            lambda i: {**real_env(i), "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "SPOTRAIN_S3_RETRY_S": "0"},
        )
        outcome = ctl.orchestrator().drive(run_id)
        assert outcome.state == RunState.INTERRUPTED, outcome.reason
        restarts = ctl.store.events(run_id, kinds=["restart"])
        (attempt,) = ctl.store.attempts(run_id)
    assert len(restarts) == orchestrator.MAX_RESTARTS
    assert attempt.exit_code == orchestrator.EXIT_UNAVAILABLE
    assert "could not reach its storage" in outcome.reason or "interrupted" in outcome.reason
