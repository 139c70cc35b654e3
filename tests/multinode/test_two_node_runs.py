"""Two-node dry-runs end to end (issue 16's "done when"): one torchrun job over two dry-run instances
(gloo on 127.0.0.1, node 0's address the rendezvous), recovered together. A notice on node 1 only
stops both at the same step with one checkpoint, and the next attempt's two new nodes resume from it;
node 1's trainer killed without a notice (and its instance reclaimed) ends the attempt within 90 s,
and the run resumes from the last periodic checkpoint."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from spotrain.cloud.local import moto_patches
from spotrain.config import load_spec
from spotrain.controller import create_run, prepare
from spotrain.layout import node_log_path
from spotrain.store import RunState, Store
from spotrain.workspace import open_controller
from tests.e2e.cli import spotrain

from .test_two_nodes_trainer import descendants


def test_a_notice_on_node_1_stops_both_nodes_and_two_new_nodes_resume(tmp_path: Path) -> None:
    spec = tmp_path / "run.yaml"
    spec.write_text("recipe: digits\nnodes: 2\n")
    args = ("launch", "-f", str(spec), "--dry-run", "--inject-interruption", "step:30@1", "--auto-resume")
    out = spotrain(*args, "-y", "--boot-delay", "0.5", home=tmp_path)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    bill = json.loads(spotrain("cost", "--json", home=tmp_path).stdout)
    entries = [(e["number"], e["node"], e["end_reason"]) for e in bill["attempts"]]
    assert entries == [
        (1, 0, "spot-interruption"),
        (1, 1, "spot-interruption"),
        (2, 0, "finished"),
        (2, 1, "finished"),
    ]
    with Store.open(tmp_path / "dry-run") as store:
        run_id = bill["run"]
        (notice,) = store.events(run_id, kinds=["interruption"])
        assert (notice.data["step"], notice.data["source"]) == (30, "injected")
        saved = [e.data["step"] for e in store.events(run_id, kinds=["checkpoint"], attempt=1)]
        assert set(saved) == {30}  # one checkpoint (local, then its copy in S3), at the step both stopped
        starts = store.events(run_id, kinds=["start"])
        assert [s.attempt for s in starts] == [1, 2] and starts[1].data["step"] == 30
        assert store.attempts(run_id)[1].resumed_from_step == 30
        assert max(e.data["top1"] for e in store.events(run_id, kinds=["eval"])) >= 0.95
        reclaims = {
            (e.attempt, e.data["node"]): e.data["by"] for e in store.events(run_id, kinds=["reclaim"])
        }
        assert reclaims == {(1, 0): "spotrain", (1, 1): "ec2"}  # the noticed node left to EC2
        logs = {
            (attempt, node): node_log_path(tmp_path / "dry-run", run_id, attempt, node).read_text()
            for attempt in (1, 2)
            for node in (0, 1)
        }  # every node's log of every attempt is kept (rank 0 writes the trainer's lines)
        assert "checkpoint at step 30" in logs[1, 0] and "exit 75" in logs[1, 0]
        assert "exitcode: 75" in logs[1, 1]  # node 1's torchrun: its worker stopped for the notice too
        assert all(logs.values())
    shown = spotrain("logs", run_id, "--attempt", "1", "--node", "1", home=tmp_path)
    assert shown.returncode == 0 and "exitcode: 75" in shown.stdout, shown.stderr
    assert (
        "exit 75" in spotrain("logs", run_id, "--attempt", "1", home=tmp_path).stdout
    )  # node 0's: the run's view
    none = spotrain("logs", run_id, "--node", "2", home=tmp_path)
    assert none.returncode == 2 and "has no node 2: it has nodes 0 to 1" in none.stderr


@pytest.fixture
def ctl(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    with open_controller(dry_run=True, boot_delay_s=0.2) as controller:
        yield controller


def test_node_1_killed_without_a_notice_ends_the_attempt_and_the_run_resumes(ctl) -> None:
    spec = load_spec(
        None,
        {
            "recipe": "digits",
            "nodes": 2,
            "dry_run": True,
            "auto_resume": True,
            "boot_delay_s": 0.2,
            "env": {"SPOTRAIN_COLLECTIVE_TIMEOUT_S": "10"},  # the survivors' wait (45 s on AWS)
        },
    )
    spec, plan = prepare(ctl, spec)
    plan = dataclasses.replace(  # periodic checkpoints every 0.3 s (under the spec's 60 s bound)
        plan,
        checkpoint=dataclasses.replace(plan.checkpoint, seconds=0.3),
        record=dataclasses.replace(plan.record, checkpoint_s=0.3),
    )
    run_id = create_run(ctl, spec, plan)
    killed: list[float] = []

    def kill_node_1_after_a_checkpoint() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            saved = [
                e.data["step"]
                for e in ctl.store.events(run_id, kinds=["checkpoint"], attempt=1)
                if e.data.get("where") == "s3"
            ]
            starts = [e for e in ctl.store.events(run_id, kinds=["trainer_start"], attempt=1)]
            node_1 = [e.data["pid"] for e in starts if e.data.get("node") == 1]
            if saved and max(saved) >= 20 and node_1:
                node = ctl.store.nodes(run_id, 1)[1]
                for pid in [node_1[0], *descendants(node_1[0])]:
                    os.kill(pid, signal.SIGKILL)  # no notice: the trainer just goes
                moto_patches.interrupt("us-east-1", node.instance_id)  # and EC2 takes the instance
                killed.append(time.time())
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=kill_node_1_after_a_checkpoint, daemon=True)
    watcher.start()
    outcome = ctl.orchestrator().drive(run_id)
    watcher.join(timeout=5)
    assert killed, "node 1 was never killed"
    assert outcome.state == RunState.SUCCEEDED, outcome.reason
    first, second = ctl.store.attempts(run_id)[:2]
    assert first.end_reason == "spot-interruption" and first.ended_at - killed[0] < 90
    assert ctl.store.events(run_id, kinds=["interruption"], attempt=1) == []  # no notice came
    last_saved = max(
        e.data["step"]
        for e in ctl.store.events(run_id, kinds=["checkpoint"], attempt=1)
        if e.data.get("where") == "s3"
    )
    start = ctl.store.events(run_id, kinds=["start"], attempt=2)[0]
    assert start.data["step"] == last_saved >= 20  # resumed from the last periodic checkpoint
