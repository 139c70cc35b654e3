"""Interruptions at awkward moments: during the sync, during a checkpoint's upload, and a reclaim with no
notice before any checkpoint. Each run still finishes, and no attempt loads a checkpoint that was not
complete in S3. Driven in-process, so the test can reach into the dry-run's moto and its instances."""

from __future__ import annotations

import dataclasses
import json
import threading
import time

import pytest

from spotrain import orchestrator
from spotrain.cloud.local import moto_patches
from spotrain.config import load_spec
from spotrain.controller import create_run, prepare
from spotrain.store import RunState
from spotrain.workspace import open_controller


def start_run(ctl, checkpoint_s: float | None = None) -> str:
    spec = load_spec(None, {"recipe": "digits", "dry_run": True, "auto_resume": True, "boot_delay_s": 0.2})
    spec, plan = prepare(ctl, spec)
    if checkpoint_s is not None:  # under the spec's bounds: the stored plan record is what the trainer gets
        plan = dataclasses.replace(
            plan,
            checkpoint=dataclasses.replace(plan.checkpoint, seconds=checkpoint_s),
            record=dataclasses.replace(plan.record, checkpoint_s=checkpoint_s),
        )
    return create_run(ctl, spec, plan)


def uploaded_steps(ctl, run_id: str, attempt: int) -> set[int]:
    return {
        e.data["step"]
        for e in ctl.store.events(run_id, kinds=["checkpoint"], attempt=attempt)
        if e.data.get("where") == "s3"
    }


def finished(ctl, run_id: str) -> tuple:
    outcome = ctl.orchestrator().drive(run_id)
    assert outcome.state == RunState.SUCCEEDED, outcome.reason
    attempts = ctl.store.attempts(run_id)
    starts = ctl.store.events(run_id, kinds=["start"])
    assert max(e.data["top1"] for e in ctl.store.events(run_id, kinds=["eval"])) >= 0.98
    assert not [
        e for e in ctl.store.events(run_id, kinds=["warning"]) if "skipped" in e.data.get("message", "")
    ]
    return attempts, starts


@pytest.fixture
def ctl(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    with open_controller(dry_run=True, boot_delay_s=0.2) as controller:
        yield controller


def test_notice_during_sync(ctl, monkeypatch: pytest.MonkeyPatch) -> None:
    run_id = start_run(ctl)
    real_sync, calls = orchestrator.sync, []

    def sync_then_notice(transport, sources, root, **kw):
        result = real_sync(transport, sources, root, **kw)
        if not calls:  # the first attempt: the notice comes before its trainer has started
            ctl.cloud.inject_interruption(ctl.store.live_attempt(run_id).instance_id)
        calls.append(root)
        return result

    monkeypatch.setattr(orchestrator, "sync", sync_then_notice)
    (first, second), starts = finished(ctl, run_id)
    stopped = ctl.store.events(run_id, kinds=["interruption"])[0].data["step"]
    assert first.end_reason == "spot-interruption" and 1 <= stopped <= 3  # at its first steps
    resumed = starts[-1].data["step"]
    assert resumed in uploaded_steps(ctl, run_id, 1)  # the next attempt loaded a checkpoint complete in S3


def test_notice_during_a_checkpoint_upload(ctl, monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.s3.models import S3Backend

    run_id = start_run(ctl, checkpoint_s=0.3)  # periodic checkpoints every 0.3 s
    real_put, noticed = S3Backend.put_object, []

    def slow_put(self, bucket_name, key_name, value, *args, **kwargs):
        if key_name.endswith("/state.pt") and "/ckpt/" in key_name and not noticed:
            live = ctl.store.live_attempt(run_id)
            noticed.append(key_name)
            ctl.cloud.inject_interruption(live.instance_id)  # the notice lands mid-upload
            time.sleep(0.5)
        return real_put(self, bucket_name, key_name, value, *args, **kwargs)

    monkeypatch.setattr(S3Backend, "put_object", slow_put)
    (first, second), starts = finished(ctl, run_id)
    assert noticed and first.end_reason == "spot-interruption"
    interruption = ctl.store.events(run_id, kinds=["interruption"])[0].data
    assert interruption["uploaded"] is True  # the trainer waited for its uploads before exit 75
    resumed = starts[-1].data["step"]
    assert resumed == interruption["step"] and resumed in uploaded_steps(ctl, run_id, 1)


def test_reclaim_without_notice_before_the_first_checkpoint(ctl) -> None:
    run_id = start_run(ctl)  # the planned interval (minutes) is far longer than this run
    reclaimed: list[str] = []

    def reclaim_at_first_step() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not reclaimed:
            live = ctl.store.live_attempt(run_id)
            if live is not None:
                events = (
                    ctl.cloud.instance_dir(live.instance_id) / "spotrain" / "runs" / run_id / "events.jsonl"
                )
                lines = events.read_text().splitlines() if events.exists() else []
                if any(json.loads(line).get("kind") == "step" for line in lines if line.strip()):
                    moto_patches.interrupt(live.region, live.instance_id)  # AWS takes it: no notice, no save
                    ctl.cloud.machines.ended([live.instance_id])  # its processes die with it
                    reclaimed.append(live.instance_id)
            time.sleep(0.005)

    threading.Thread(target=reclaim_at_first_step, daemon=True).start()
    (first, second), starts = finished(ctl, run_id)
    assert reclaimed == [first.instance_id] and first.end_reason == "spot-interruption"
    assert uploaded_steps(ctl, run_id, 1) == set()  # nothing was saved...
    assert starts[-1].data["resumed_from"] is None and starts[-1].data["step"] == 0  # ...so it started fresh
