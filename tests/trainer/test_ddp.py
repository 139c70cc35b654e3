"""Two processes on the CPU (gloo) through torchrun, as on a multi-GPU instance."""

from __future__ import annotations

import signal

from helpers import wait_for
from trainer_helpers import read_events

LAUNCH = ["--standalone", "--nproc_per_node=2", "-m", "trainer.train"]


def test_two_ranks_train_digits(trainer, tmp_path) -> None:
    run = tmp_path / "run"
    out = trainer.run(
        *LAUNCH,
        "--recipe",
        "digits",
        "--run-dir",
        str(run),
        "--max-epochs",
        "6",
        module="trainer.launch",
        timeout=180,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    events = read_events(run)
    assert events[0]["world_size"] == 2
    steps = [e for e in events if e["kind"] == "step"]
    first_epoch = next(e for e in events if e["kind"] == "epoch")
    assert first_epoch["batch_size"] == 128  # global batch = 64 per rank x 2
    assert steps[0]["lr"] > 0 and events[-1]["kind"] == "done"
    assert max(e["top1"] for e in events if e["kind"] == "eval") >= 0.95


def test_notice_to_one_rank_stops_both_with_one_checkpoint(trainer, imds, tmp_path) -> None:
    run = tmp_path / "run"
    proc = trainer.start(
        *LAUNCH,
        "--recipe",
        "digits",
        "--run-dir",
        str(run),
        "--batch-size",
        "8",
        "--log-every",
        "1",
        "--checkpoint-every",
        "3600",
        env=imds.env(),
        module="trainer.launch",
    )
    wait_for(lambda: any(e["kind"] == "step" and e["step"] >= 20 for e in read_events(run)), 90, "step 20")
    imds.arm(only_rank=1)  # rank 0's watcher never sees it: only the all-reduce tells rank 0
    assert proc.wait(timeout=90) == 75, proc.stdout.read()[-3000:]
    events = read_events(run)
    interruption = [e for e in events if e["kind"] == "interruption"]
    assert len(interruption) == 1 and interruption[0]["source"] == "imds"
    checkpoints = [e for e in events if e["kind"] == "checkpoint"]
    assert len(checkpoints) == 1 and checkpoints[0]["step"] == interruption[0]["step"]
    assert [p.name for p in (run / "ckpt").iterdir() if p.name.startswith("step-")] == [
        checkpoints[0]["path"]
    ]
    import torch

    rng = torch.load(run / "ckpt" / checkpoints[0]["path"] / "rng.pt", weights_only=True)
    assert len(rng["ranks"]) == 2  # each rank's RNG state, gathered to rank 0


def test_sigterm_counts_as_a_notice(trainer, tmp_path) -> None:
    run = tmp_path / "run"
    proc = trainer.start("--recipe", "digits", "--run-dir", str(run), "--batch-size", "8", "--log-every", "1")
    wait_for(lambda: any(e["kind"] == "step" and e["step"] >= 10 for e in read_events(run)), 60, "step 10")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 75
    interruption = [e for e in read_events(run) if e["kind"] == "interruption"][0]
    assert interruption["source"] == "sigterm"
    assert (run / "ckpt" / "LATEST").read_text().strip() == f"step-{interruption['step']:06d}"


def test_rebalance_to_one_rank_checkpoints_both_at_one_step_and_trains_on(trainer, imds, tmp_path) -> None:
    run = tmp_path / "run"
    proc = trainer.start(
        *LAUNCH,
        *("--recipe", "digits", "--run-dir", str(run), "--batch-size", "8", "--log-every", "1"),
        *("--checkpoint-every", "3600", "--max-epochs", "50", "--target-acc", "1.0"),
        env=imds.env(),
        module="trainer.launch",
    )
    try:
        wait_for(lambda: any(e["kind"] == "step" for e in read_events(run)), 90, "the first step")
        imds.arm_rebalance(only_rank=1)  # rank 0 never sees it: only the all-reduce tells rank 0
        rebalance = wait_for(
            lambda: next((e for e in read_events(run) if e["kind"] == "rebalance"), None), 90, "the rebalance"
        )
        # Training goes on past the recommendation's checkpoint; then a notice stops it as usual.
        wait_for(
            lambda: any(e["kind"] == "step" and e["step"] > rebalance["step"] for e in read_events(run)),
            90,
            "a step after the rebalance checkpoint",
        )
        imds.arm(only_rank=1)
        assert proc.wait(timeout=90) == 75, proc.stdout.read()[-3000:]
    finally:
        # A failed wait: torchrun passes a SIGTERM on to its workers, where a kill would orphan them.
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    events = read_events(run)
    assert [e["kind"] for e in events].count("rebalance") == 1
    assert rebalance["source"] == "imds" and rebalance["notice_time"] == "2026-11-29T11:50:00Z"
    stop = next(e for e in events if e["kind"] == "interruption")
    checkpoints = [e["step"] for e in events if e["kind"] == "checkpoint"]
    assert checkpoints == [rebalance["step"], stop["step"]] and stop["step"] > rebalance["step"]
    import torch

    rng = torch.load(run / "ckpt" / rebalance["checkpoint"] / "rng.pt", weights_only=True)
    assert len(rng["ranks"]) == 2  # both ranks took part in the recommendation's save
