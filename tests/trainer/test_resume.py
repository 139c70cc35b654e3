"""Exact resume: interrupted mid-epoch by an IMDS notice, resumed, and bit-identical to a run that never stopped."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import wait_for
from trainer_helpers import REPO, Trainer, read_events

# digits at batch 8: 179 steps an epoch, so a notice after step 40 lands well inside the first epoch.
ARGS = [
    "--recipe",
    "digits",
    "--seed",
    "3",
    "--batch-size",
    "8",
    "--max-epochs",
    "2",
    "--target-acc",
    "1.0",
    "--log-every",
    "1",
]
STEPS_PER_EPOCH = 1437 // 8


def losses(run_dir: Path) -> dict[int, float]:
    """step -> loss; after a resume, the resumed attempt's value wins (the log is append-only)."""
    return {e["step"]: e["loss"] for e in read_events(run_dir) if e["kind"] == "step"}


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    latest = (run_dir / "ckpt" / "LATEST").read_text().strip()
    return torch.load(run_dir / "ckpt" / latest / "state.pt", weights_only=True)["model"]


def interrupt(trainer, imds, run_dir: Path, *extra: str) -> dict:
    """Start a run, post a notice once it passed step 40, and return its interruption event."""
    proc = trainer.start(*ARGS, "--run-dir", str(run_dir), *extra, env=imds.env())
    wait_for(
        lambda: any(e["kind"] == "step" and e["step"] >= 40 for e in read_events(run_dir)), 60, "step 40"
    )
    imds.arm()
    assert proc.wait(timeout=60) == 75, proc.stdout.read()
    events = read_events(run_dir)
    interruption = [e for e in events if e["kind"] == "interruption"][-1]
    assert not [e for e in events if e["kind"] == "warning"], events
    assert interruption["kind"] == "interruption" and interruption["source"] == "imds"
    assert interruption["notice_time"] == "2026-11-29T12:00:00Z"
    assert interruption["step"] % STEPS_PER_EPOCH != 0  # mid-epoch
    assert imds.tokenless == 0  # IMDSv2 only: every GET carried a token
    return interruption


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """One uninterrupted run with the same seed, shared by the tests of this module."""
    run = tmp_path_factory.mktemp("reference")
    out = Trainer({"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "SPOTRAIN_IMDS_URL": "off"}).run(
        *ARGS, "--run-dir", str(run)
    )
    assert out.returncode == 0, out.stderr
    return run


def assert_same_as_reference(run: Path, reference: Path, resumed_at: int) -> None:
    ref, got = losses(reference), losses(run)
    after = [s for s in ref if s > resumed_at]
    assert len(after) > 100
    assert [got[s] for s in after] == [ref[s] for s in after]  # identical, not close
    ref_w, got_w = final_weights(reference), final_weights(run)
    assert ref_w.keys() == got_w.keys()
    assert all(torch.equal(ref_w[k], got_w[k]) for k in ref_w)


def test_local_resume_is_bit_exact(trainer, imds, reference, tmp_path) -> None:
    run = tmp_path / "run"
    stop = interrupt(trainer, imds, run)
    out = trainer.run(*ARGS, "--run-dir", str(run), "--resume", "auto")
    assert out.returncode == 0, out.stderr
    start = [e for e in read_events(run) if e["kind"] == "start"][-1]
    assert start["resumed_from"].endswith(f"step-{stop['step']:06d}") and start["step"] == stop["step"]
    assert_same_as_reference(run, reference, stop["step"])


def test_s3_resume_on_moto_is_bit_exact(trainer, imds, reference, moto_s3, tmp_path) -> None:
    endpoint, bucket = moto_s3
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint)
    first = tmp_path / "first-instance"
    stop = interrupt(trainer, imds, first, "--mirror", f"s3://{bucket}/runs/r1")
    assert stop["uploaded"] is True
    latest = s3.get_object(Bucket=bucket, Key="runs/r1/ckpt/LATEST")["Body"].read().decode().strip()
    assert latest == f"step-{stop['step']:06d}"
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="runs/r1/")["Contents"]}
    assert f"runs/r1/ckpt/{latest}/manifest.json" in keys
    assert any(k.endswith("/events.jsonl") and "/attempts/" in k for k in keys)

    second = tmp_path / "second-instance"  # a new machine: nothing local, everything from S3
    out = trainer.run(
        *ARGS,
        "--run-dir",
        str(second),
        "--resume",
        f"s3://{bucket}/runs/r1",
        "--mirror",
        f"s3://{bucket}/runs/r1",
    )
    assert out.returncode == 0, out.stderr
    assert_same_as_reference(second, reference, stop["step"])
    steps_run = sorted(losses(second))
    assert steps_run[0] == stop["step"] + 1  # the second instance redid no step


def test_corrupt_latest_falls_back_to_previous_on_resume(trainer, tmp_path) -> None:
    run = tmp_path / "run"
    out = trainer.run(*ARGS, "--run-dir", str(run), "--max-steps", "30", "--checkpoint-every", "0.05")
    assert out.returncode == 0, out.stderr
    ckpts = sorted(p for p in (run / "ckpt").iterdir() if p.name.startswith("step-"))
    assert len(ckpts) >= 2
    newest, previous = ckpts[-1], ckpts[-2]
    state = newest / "state.pt"
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])  # truncated on disk
    out = trainer.run(*ARGS, "--run-dir", str(run), "--resume", "auto", "--max-steps", "31")
    assert out.returncode == 0, out.stderr
    events = read_events(run)
    warning = next(e for e in events if e["kind"] == "warning")
    assert newest.name in warning["message"] and "truncated" in warning["message"]
    assert [e for e in events if e["kind"] == "start"][-1]["resumed_from"].endswith(previous.name)


def test_resume_from_a_named_checkpoint_directory_loads_exactly_that_one(trainer, tmp_path) -> None:
    run = tmp_path / "run"
    out = trainer.run(*ARGS, "--run-dir", str(run), "--max-steps", "30", "--checkpoint-every", "0.05")
    assert out.returncode == 0, out.stderr
    older = sorted(p for p in (run / "ckpt").iterdir() if p.name.startswith("step-"))[0]
    again = tmp_path / "again"
    out = trainer.run(*ARGS, "--run-dir", str(again), "--resume", str(older), "--max-steps", "40")
    assert out.returncode == 0, out.stderr
    start = next(e for e in read_events(again) if e["kind"] == "start")
    assert start["resumed_from"] == str(older) and start["step"] == int(older.name.split("-")[1])
    out = trainer.run(*ARGS, "--run-dir", str(tmp_path / "x"), "--resume", str(tmp_path / "missing"))
    assert out.returncode == 2 and "no such file or directory" in out.stderr
