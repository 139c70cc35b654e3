"""A rebalance recommendation (EC2's early warning of elevated interruption risk) makes the trainer
checkpoint at once and train on; a later interruption notice still stops it, and it resumes."""

from __future__ import annotations

from pathlib import Path

from trainer_helpers import read_events

from trainer.checkpoint import verify

# digits at batch 8: 179 steps an epoch; one epoch is a few seconds on one CPU thread.
ARGS = ["--recipe", "digits", "--seed", "1", "--batch-size", "8", "--max-epochs", "1", "--target-acc", "1.0"]
OFF = {"SPOTRAIN_IMDS_URL": "off"}


def checkpoints(run: Path) -> list[int]:
    return [e["step"] for e in read_events(run) if e["kind"] == "checkpoint" and e["where"] == "local"]


def test_rebalance_checkpoints_at_its_step_and_training_goes_on(trainer, tmp_path) -> None:
    run = tmp_path / "run"
    out = trainer.run(*ARGS, "--run-dir", str(run), env={**OFF, "SPOTRAIN_REBALANCE_AT": "step:23"})
    assert out.returncode == 0, out.stderr
    events = read_events(run)
    rebalances = [e for e in events if e["kind"] == "rebalance"]
    assert len(rebalances) == 1, rebalances
    rebalance = rebalances[0]
    assert rebalance["step"] == 23 and rebalance["source"] == "injected"
    assert rebalance["checkpoint"] == "step-000023" and rebalance["checkpoint_s"] >= 0
    assert checkpoints(run) == [23, 179]  # the recommendation's, then the finished model's
    assert verify(run / "ckpt" / "step-000023") is None
    assert events[-1]["kind"] == "done" and events[-1]["step"] == 179
    assert not [e for e in events if e["kind"] in ("interruption", "warning")]


def test_rebalance_then_notice_checkpoints_at_both_stops_at_the_notice_and_resumes(trainer, tmp_path) -> None:
    run = tmp_path / "run"
    injected = {**OFF, "SPOTRAIN_REBALANCE_AT": "step:20", "SPOTRAIN_NOTICE_AT": "step:50"}
    out = trainer.run(*ARGS, "--run-dir", str(run), env=injected)
    assert out.returncode == 75, out.stderr
    events = read_events(run)
    assert [e["step"] for e in events if e["kind"] == "rebalance"] == [20]
    assert [e["step"] for e in events if e["kind"] == "interruption"] == [50]
    assert checkpoints(run) == [20, 50]
    out = trainer.run(*ARGS, "--run-dir", str(run), "--resume", "auto", env=OFF)
    assert out.returncode == 0, out.stderr
    events = read_events(run)
    start = [e for e in events if e["kind"] == "start"][-1]
    assert start["resumed_from"].endswith("step-000050") and start["step"] == 50
    assert events[-1]["kind"] == "done" and events[-1]["step"] == 179
    assert len([e for e in events if e["kind"] == "rebalance"]) == 1  # the resumed attempt saw none
