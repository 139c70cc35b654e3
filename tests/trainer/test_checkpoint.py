"""Checkpoints: atomic and verified; each kind of damage falls back to the previous one with a warning."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from trainer.checkpoint import LATEST, Checkpointer, load_latest, rng_state, set_rng_state, verify
from trainer.events import EventLog, read_events


@pytest.fixture
def saved(tmp_path):
    """Three checkpoints (steps 10, 20, 30) written by the background writer, and the event log."""
    events = EventLog(tmp_path / "events.jsonl")
    ckpt = Checkpointer(tmp_path / "ckpt", events, keep=3)
    for step in (10, 20, 30):
        weights = torch.full((64, 64), float(step))
        blocked = ckpt.save(step, {"state.pt": {"w": weights, "step": step}})
        weights.add_(1000)  # training goes on changing the tensor: the snapshot must not see it
        assert blocked < 1.0
    ckpt.wait()
    return tmp_path / "ckpt", events


def loaded_step(root, events) -> int:
    directory, files = load_latest(root, events)
    assert torch.equal(files["state.pt"]["w"], torch.full((64, 64), float(files["state.pt"]["step"])))
    return files["state.pt"]["step"]


def warnings(events: EventLog) -> list[str]:
    return [e["message"] for e in read_events(events.path) if e["kind"] == "warning"]


def test_layout_manifest_and_latest(saved) -> None:
    root, events = saved
    assert (root / LATEST).read_text().strip() == "step-000030"
    manifest = json.loads((root / "step-000030" / "manifest.json").read_text())
    assert manifest["step"] == 30 and len(manifest["files"]["state.pt"]["sha256"]) == 64
    assert not list(root.glob(".tmp-*"))
    assert loaded_step(root, events) == 30 and warnings(events) == []
    written = [e for e in read_events(events.path) if e["kind"] == "checkpoint"]
    assert [e["step"] for e in written] == [10, 20, 30] and all(e["bytes"] > 16000 for e in written)


def test_truncated_file_falls_back(saved) -> None:
    root, events = saved
    state = root / "step-000030" / "state.pt"
    state.write_bytes(state.read_bytes()[:100])
    assert loaded_step(root, events) == 20
    assert "step-000030 skipped" in warnings(events)[0] and "truncated" in warnings(events)[0]


def test_latest_naming_a_missing_directory_falls_back(saved) -> None:
    root, events = saved
    (root / LATEST).write_text("step-000040\n")
    assert loaded_step(root, events) == 30
    assert "step-000040 skipped: directory is missing" in warnings(events)[0]


def test_manifest_mismatch_falls_back(saved) -> None:
    root, events = saved
    state = root / "step-000030" / "state.pt"
    data = bytearray(state.read_bytes())
    data[-20] ^= 0xFF  # same size, one flipped byte
    state.write_bytes(bytes(data))
    assert verify(root / "step-000030") == "state.pt does not match its sha256 in the manifest"
    assert loaded_step(root, events) == 20


def test_partial_directory_without_manifest_is_never_loaded(saved) -> None:
    root, events = saved
    (root / "step-000030" / "manifest.json").unlink()  # as if the writer died before the rename
    assert loaded_step(root, events) == 20


def test_keep_prunes_old_checkpoints(tmp_path) -> None:
    ckpt = Checkpointer(tmp_path / "ckpt", EventLog(None), keep=2)
    for step in range(1, 6):
        ckpt.save(step, {"state.pt": {"x": torch.zeros(1)}}, blocking=True)
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["LATEST", "step-000004", "step-000005"]


def test_a_failed_write_is_raised_not_lost(tmp_path) -> None:
    root = tmp_path / "ckpt"
    ckpt = Checkpointer(root, EventLog(None))
    root.write_text("a file where the directory should be")  # after: the constructor refuses one
    ckpt.save(1, {"state.pt": {"x": torch.zeros(1)}})
    with pytest.raises(OSError):
        ckpt.wait()


def test_nothing_to_load(tmp_path) -> None:
    assert load_latest(tmp_path / "absent", EventLog(None)) is None


def test_rng_state_round_trips_through_a_weights_only_load(tmp_path) -> None:
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    torch.save(rng_state(), tmp_path / "rng.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
