"""Two "nodes" of one torchrun job on this machine (issue 16's trainer half): each its own
`python -m trainer.launch --nnodes 2 --node-rank R` with one gloo process, c10d rendezvous on
127.0.0.1, its own run directory (rank 0 writes events and checkpoints, as on node 0's instance).

A notice on node 1 only stops both at the same step with one checkpoint, both exit 75; node 1's
trainer killed without a notice makes node 0's exit non-zero well before PyTorch's 30-minute default
(trainer/dist.py's collective timeout)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from spotrain.contract import NodeRole, node_launch_args
from trainer import events as trainer_events

REPO = Path(__file__).resolve().parents[2]
TRAIN = ("-m", "trainer.train", "--recipe", "digits", "--batch-size", "8", "--log-every", "1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_node(rank: int, port: int, run_dir: Path, *args: str, env: dict[str, str] | None = None):
    """Node `rank`'s torchrun. Node 0 hosts the rendezvous store (is_host): on 127.0.0.1 every node
    would match the endpoint's address and the first to bind would host, and a killed host takes the
    survivors' agents with it (their store reads fail) instead of leaving node 0 to report."""
    role = NodeRole(rank=rank, nodes=2, endpoint=f"127.0.0.1:{port}", job_id="two-nodes")  # the contract's
    command = [
        sys.executable, "-m", "trainer.launch", *node_launch_args(role, gpus=1), *TRAIN, "--run-dir", str(run_dir), *args,
    ]  # fmt: skip
    full = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **(env or {})}
    if "SPOTRAIN_NOTICE_AT" not in (env or {}):
        full.pop("SPOTRAIN_NOTICE_AT", None)  # the notice goes to the node it is meant for only
    return subprocess.Popen(
        command, cwd=REPO, env=full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )  # fmt: skip


def read_events(run_dir: Path) -> list[dict]:
    path = run_dir / "events.jsonl"
    return trainer_events.read_events(path) if path.exists() else []


def poll(predicate, deadline_s: float, what: str):
    """predicate() until truthy, at most deadline_s (a deadline, not a timing assertion)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if value := predicate():
            return value
        time.sleep(0.1)
    raise AssertionError(f"no {what} within {deadline_s:.0f} s")  # the finally's kill shows its output


def descendants(pid: int) -> list[int]:
    """pid's children, theirs, ...: torchrun starts its workers in sessions of their own, so a process
    group kill of the node would miss its trainer."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        children = [p for p, parent in parents.items() if parent in frontier]
        found, frontier = found + children, children
    return found


def kill_node(proc: subprocess.Popen) -> None:
    """The machine is gone: its torchrun and its trainer, SIGKILLed, nothing said to anyone."""
    for pid in [proc.pid, *descendants(proc.pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def end_all(*procs: subprocess.Popen) -> None:
    for proc in procs:
        kill_node(proc)
        proc.wait(timeout=30)


def test_a_notice_on_node_1_only_stops_both_nodes_at_one_step_and_two_new_nodes_resume_there(
    tmp_path: Path, moto_server: str, monkeypatch
) -> None:
    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)  # the nodes' S3: the mirror's bucket on moto
    boto3.client("s3", endpoint_url=moto_server).create_bucket(Bucket="ckpts")
    mirror = ("--mirror", "s3://ckpts/runs/r1", "--resume", "auto")
    port, dirs = free_port(), [tmp_path / "a1-node-0", tmp_path / "a1-node-1"]
    node0 = start_node(0, port, dirs[0], "--checkpoint-every", "3600", *mirror)
    node1 = start_node(
        1, port, dirs[1], "--checkpoint-every", "3600", *mirror, env={"SPOTRAIN_NOTICE_AT": "step:30"}
    )
    try:
        codes = [node0.wait(timeout=180), node1.wait(timeout=60)]
    finally:
        end_all(node0, node1)
    assert codes == [75, 75], node0.stdout.read()[-3000:] + node1.stdout.read()[-3000:]
    events = read_events(dirs[0])
    start = next(e for e in events if e["kind"] == "start")  # after a warning: the mirror was empty
    assert start["world_size"] == 2 and start["step"] == 0
    (stop,) = [e for e in events if e["kind"] == "interruption"]
    assert stop["step"] == 30 and stop["uploaded"] is True  # node 1's notice, agreed by node 0
    checkpoints = [(e["where"], e["step"]) for e in events if e["kind"] == "checkpoint"]
    assert checkpoints == [("local", 30), ("s3", 30)]  # one checkpoint, written, then mirrored
    assert (dirs[0] / "ckpt" / "LATEST").read_text().strip() == "step-000030"
    assert not (dirs[1] / "ckpt").exists()  # one checkpoint, rank 0's: node 1 wrote none

    # The next attempt: two new machines, nothing local, both resume from the mirror's step 30.
    port, dirs = free_port(), [tmp_path / "a2-node-0", tmp_path / "a2-node-1"]
    node0, node1 = (start_node(r, port, dirs[r], *mirror) for r in (0, 1))
    try:
        codes = [node0.wait(timeout=240), node1.wait(timeout=60)]
    finally:
        end_all(node0, node1)
    assert codes == [0, 0], node0.stdout.read()[-3000:] + node1.stdout.read()[-3000:]
    events = read_events(dirs[0])
    start = next(e for e in events if e["kind"] == "start")
    assert start["step"] == 30 and start["resumed_from"].endswith("step-000030")
    steps = [e["step"] for e in events if e["kind"] == "step"]
    assert steps[0] == 31  # no step done twice
    assert max(e["top1"] for e in events if e["kind"] == "eval") >= 0.95


def test_node_1_killed_without_a_notice_ends_node_0_within_90_s(tmp_path: Path) -> None:
    port, dirs = free_port(), [tmp_path / "node-0", tmp_path / "node-1"]
    node0 = start_node(0, port, dirs[0], "--max-epochs", "50", "--target-acc", "1.0")
    node1 = start_node(1, port, dirs[1], "--max-epochs", "50", "--target-acc", "1.0")
    try:
        poll(
            lambda: any(e["kind"] == "step" and e["step"] >= 10 for e in read_events(dirs[0])), 120, "step 10"
        )
        kill_node(node1)
        codes = poll(lambda: [node0.poll()] if node0.poll() is not None else None, 90, "exit of node 0")
    finally:
        end_all(node0, node1)
    assert codes[0] not in (0, 75), node0.stdout.read()[-3000:]
    assert not [e for e in read_events(dirs[0]) if e["kind"] in ("interruption", "done")]


def test_a_silent_node_1_ends_node_0_by_the_collective_timeout(tmp_path: Path) -> None:
    """A machine that vanishes closes no connection: SIGSTOP plays it (no RST, no exit code), so only
    trainer/dist.py's timeout on the step's collectives (5 s here, 45 s by default) ends node 0."""
    port, dirs = free_port(), [tmp_path / "node-0", tmp_path / "node-1"]
    quick = {"SPOTRAIN_COLLECTIVE_TIMEOUT_S": "5"}
    node0 = start_node(0, port, dirs[0], "--max-epochs", "50", "--target-acc", "1.0", env=quick)
    node1 = start_node(1, port, dirs[1], "--max-epochs", "50", "--target-acc", "1.0", env=quick)
    try:
        poll(
            lambda: any(e["kind"] == "step" and e["step"] >= 10 for e in read_events(dirs[0])), 120, "step 10"
        )
        for pid in [node1.pid, *descendants(node1.pid)]:
            os.kill(pid, signal.SIGSTOP)
        codes = poll(lambda: [node0.poll()] if node0.poll() is not None else None, 90, "exit of node 0")
    finally:
        end_all(node0, node1)
    out = node0.stdout.read()
    assert codes[0] not in (0, 75), out[-3000:]
    assert "Timed out" in out or "timeout" in out.lower(), out[-3000:]  # the timeout, not a closed socket
