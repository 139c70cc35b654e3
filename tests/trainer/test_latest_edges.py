"""The checkpoint directory's edges (issue 11, item 7): a LATEST that cannot be read, a `ckpt` that is a
file. Both are what a user or a damaged disk leaves behind; neither may crash the trainer with a
traceback, and an unreadable LATEST must not lose the intact checkpoints beside it."""

from __future__ import annotations

import pytest
from trainer_helpers import read_events

from trainer import TrainerError
from trainer.checkpoint import LATEST, Checkpointer, load_latest
from trainer.events import EventLog

ARGS = ["--recipe", "digits", "--seed", "3", "--batch-size", "8", "--max-epochs", "1", "--log-every", "1"]


def two_checkpoints(tmp_path) -> tuple:
    events = EventLog(tmp_path / "events.jsonl")
    ckpt = Checkpointer(tmp_path / "ckpt", events, keep=3)
    for step in (10, 20):
        ckpt.save(step, {"state.pt": {"step": step}})
    ckpt.wait()
    return tmp_path / "ckpt", events


@pytest.mark.parametrize(
    "latest",
    [b"\xff\xfe\x00step-000020\n", b"../../etc\n", b"/etc\n", b"step-000020\x00\n"],
    ids=["non-utf8", "relative-escape", "absolute", "nul"],
)
def test_unreadable_latest_falls_back_to_the_newest_intact_checkpoint(tmp_path, latest: bytes) -> None:
    root, events = two_checkpoints(tmp_path)
    (root / LATEST).write_bytes(latest)
    directory, files = load_latest(root, events)
    assert directory == root / "step-000020" and files["state.pt"]["step"] == 20
    warnings = [e["message"] for e in read_events(tmp_path) if e["kind"] == "warning"]
    assert len(warnings) == 1 and "LATEST" in warnings[0] and "step-000020" in warnings[0], warnings


def test_latest_that_is_a_directory_falls_back_with_a_warning(tmp_path) -> None:
    root, events = two_checkpoints(tmp_path)
    (root / LATEST).unlink()
    (root / LATEST).mkdir()
    assert load_latest(root, events)[0] == root / "step-000020"
    assert any("LATEST" in e["message"] for e in read_events(tmp_path) if e["kind"] == "warning")


def test_trainer_resumes_past_a_non_utf8_latest(trainer, tmp_path) -> None:
    """The reproduction: two intact checkpoints and a LATEST of binary bytes; `--resume auto` goes on
    from the newest one (exit 0) instead of failing the run."""
    run = tmp_path / "run"
    out = trainer.run(*ARGS, "--run-dir", str(run), "--max-steps", "30", "--checkpoint-every", "0.05")
    assert out.returncode == 0, out.stderr
    ckpts = sorted(p.name for p in (run / "ckpt").iterdir() if p.name.startswith("step-"))
    assert len(ckpts) >= 2
    (run / "ckpt" / LATEST).write_bytes(b"\x80\x81\xfe\xff garbage")
    out = trainer.run(*ARGS, "--run-dir", str(run), "--resume", "auto", "--max-steps", "31")
    assert out.returncode == 0, out.stderr
    events = read_events(run)
    assert [e for e in events if e["kind"] == "start"][-1]["resumed_from"].endswith(ckpts[-1])
    assert any("LATEST" in e["message"] for e in events if e["kind"] == "warning")


def test_ckpt_that_is_a_file_is_a_clear_error_before_any_training(trainer, tmp_path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "ckpt").write_text("not a directory")
    out = trainer.run(*ARGS, "--run-dir", str(run), "--max-steps", "30")
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and "FileExistsError" not in out.stderr
    assert f"{run / 'ckpt'} is a file" in out.stderr and "hint:" in out.stderr
    assert (run / "ckpt").read_text() == "not a directory"  # left as it was: it is not the trainer's
    assert not [e for e in read_events(run) if e["kind"] == "step"]  # refused before any training


def test_checkpointer_refuses_a_file_at_its_root(tmp_path) -> None:
    (tmp_path / "ckpt").write_text("x")
    with pytest.raises(TrainerError, match="is a file"):
        Checkpointer(tmp_path / "ckpt", EventLog(None))
