"""The warm replacement on its own (onboard/standby.py, the supervisor beside a live attempt) and the
at-risk trainer's hold after its rebalance checkpoint (trainer/spot.py): each waits for a file or a
record, polled with a deadline, never for the clock."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from dataclasses import replace

import pytest

from spotrain.onboard.ledger import AttemptRecord, RunEnd
from spotrain.onboard.supervisor import RunBucket
from trainer.spot import HOLD_ENV, SpotWatcher

from .conftest import BUCKET, RUN, World

DEADLINE_S = 30.0


def wait_for(what, deadline_s: float = DEADLINE_S) -> bool:
    deadline = time.monotonic() + deadline_s
    while not what() and time.monotonic() < deadline:
        time.sleep(0.05)  # a poll's pause, bounded by the deadline
    return bool(what())


@pytest.mark.parametrize("told", ["stopped", "ended"])
def test_a_replacement_beside_a_live_attempt_starts_warm_and_goes_only_after_its_stop(
    world: World, told: str
) -> None:
    world.write_settings("done")
    run = RunBucket(world.s3, BUCKET, RUN)
    live = AttemptRecord(1, "i-at-risk", "g4dn.xlarge", "us-east-1a", "spot", time.time(), 0.3, time.time())
    run.write_attempt(live)  # the at-risk instance, still training (no end, a fresh heartbeat)
    cmd, env = world.supervisor()
    proc = subprocess.Popen(cmd, cwd=world.bundle, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:

        def warm() -> bool:
            run.write_attempt(AttemptRecord(**{**live.__dict__, "heartbeat": time.time()}))
            return (world.run_dir / "warm").exists()

        assert wait_for(warm), proc.stdout.read() if proc.poll() is not None else "no warm marker"
        marker = json.loads((world.run_dir / "warm").read_text())
        assert marker["pid"] != proc.pid and proc.poll() is None
        assert not (world.run_dir / "go").exists()
        assert "stub trainer" not in (world.run_dir / "train.log").read_text()  # nothing trains yet
        stopped = replace(live, stopped_at=time.time(), heartbeat=time.time())  # its trainer's stop, told
        told_at = stopped.stopped_at
        if told == "ended":
            stopped = stopped.ended(time.time(), 75, "interrupted", checkpointed=True)
            told_at = stopped.end
        run.write_attempt(stopped)
        if told == "stopped":
            assert wait_for(lambda: (world.run_dir / "go").exists())
            run.write_attempt(stopped.ended(time.time(), 75, "interrupted", checkpointed=True))
        assert proc.wait(DEADLINE_S) == 0
    finally:
        proc.kill()
    go = json.loads((world.run_dir / "go").read_text())
    assert go["why"] == told and go["t"] >= told_at
    assert "stub trainer done" in (world.run_dir / "train.log").read_text()
    ledger = world.ledger()
    assert [(a.attempt, a.exit_code) for a in ledger.attempts] == [(1, 75), (2, 0)]
    assert ledger.end is not None and ledger.end.state == "SUCCEEDED" and world.desired() == 0


def test_a_warm_replacement_whose_predecessor_ends_the_run_trains_nothing(world: World) -> None:
    world.write_settings("done")
    run = RunBucket(world.s3, BUCKET, RUN)
    live = AttemptRecord(1, "i-at-risk", "g4dn.xlarge", "us-east-1a", "spot", time.time(), 0.3, time.time())
    run.write_attempt(live)
    cmd, env = world.supervisor()
    proc = subprocess.Popen(cmd, cwd=world.bundle, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert wait_for(lambda: (world.run_dir / "warm").exists())
        run.write_attempt(live.ended(time.time(), 0, "finished", checkpointed=True))
        run.write_end(RunEnd("SUCCEEDED", "attempt 1 finished", time.time(), 1))
        assert proc.wait(DEADLINE_S) == 0
    finally:
        proc.kill()
    assert not (world.run_dir / "go").exists()
    assert "stub trainer" not in (world.run_dir / "train.log").read_text()
    ledger = world.ledger()
    assert [(a.attempt, a.exit_code, a.reason) for a in ledger.attempts] == [
        (1, 0, "finished"),
        (2, 0, "the run ended before it trained"),
    ]
    assert ledger.end is not None and ledger.end.attempt == 1 and world.desired() == 0


def test_the_hold_after_a_rebalance_checkpoint_ends_on_its_file_or_on_a_notice(tmp_path, monkeypatch) -> None:
    hold = tmp_path / "hold"
    monkeypatch.setenv(HOLD_ENV, str(hold))
    for end in ("file", "notice"):
        watcher = SpotWatcher(base_url="off")
        hold.unlink(missing_ok=True)
        held = threading.Thread(target=watcher.hold_after_rebalance)
        held.start()
        assert held.is_alive()  # it waits
        if end == "file":
            hold.touch()
        else:
            watcher.arm(10, at="step:1", rebalance_at="")
            watcher.check_step(1)  # the injected notice, as the IMDS poll or SIGTERM would set it
        held.join(DEADLINE_S)
        assert not held.is_alive(), end
        assert (watcher.notice is not None) == (end == "notice")
    monkeypatch.delenv(HOLD_ENV)
    SpotWatcher(base_url="off").hold_after_rebalance()  # nothing to wait for
