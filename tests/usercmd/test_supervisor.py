"""trainer/usercmd.py without a cloud: setup once per instance, metric lines as events, the command's
exit code passed through, and a snapshot of the checkpoint directory restored as it was saved."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from trainer.events import EventLog, read_events
from trainer.usercmd import Supervisor, parse_args
from trainer.usercmd_state import metric_events, newest_local, snapshot, unpack

REPO = Path(__file__).resolve().parents[2]


def test_setup_runs_once_per_instance_and_again_when_it_changes(tmp_path: Path) -> None:
    count = tmp_path / "count"
    setup = f"echo x >> {count}"
    argv = ["--run-dir", str(tmp_path / "run"), "--workdir", str(tmp_path), "--setup", setup, "--", "true"]
    for _ in range(2):  # a second start on the same instance (a restart after exit 69) skips it
        assert Supervisor(parse_args(argv)).setup_once() == 0
    assert count.read_text().splitlines() == ["x"]
    argv[argv.index(setup)] = setup + " && echo y >> " + str(count)
    assert Supervisor(parse_args(argv)).setup_once() == 0
    assert count.read_text().splitlines() == ["x", "x", "y"]


def test_a_failed_setup_is_not_marked_done(tmp_path: Path) -> None:
    argv = ["--run-dir", str(tmp_path / "run"), "--workdir", str(tmp_path), "--setup", "exit 4", "--", "true"]
    assert Supervisor(parse_args(argv)).setup_once() == 4
    assert not (tmp_path / "run" / "setup.done").exists()


def test_metric_lines_become_step_and_eval_events() -> None:
    assert metric_events('{"step": 10, "loss": 0.3, "lr": 0.1, "name": "x"}') == [
        ("step", {"step": 10, "loss": 0.3, "lr": 0.1})
    ]
    assert metric_events('{"step": 90, "top1": 0.9, "top5": 0.99, "epoch": 3}') == [
        ("eval", {"top1": 0.9, "top5": 0.99, "step": 90, "epoch": 3}),
    ]
    for text in ("step 10 loss 0.3", '{"step": 1.5}', '{"loss": NaN}', "[1, 2]", '{"step": true}', "{torn"):
        assert metric_events(text) == []


def test_a_snapshot_is_restored_as_the_directory_was(tmp_path: Path) -> None:
    events = EventLog(tmp_path / "events.jsonl")
    source = tmp_path / "ckpt-dir"
    (source / "sub").mkdir(parents=True)
    (source / "last.pt").write_bytes(b"weights")
    (source / "sub" / "opt.pt").write_bytes(b"moments")
    assert snapshot(tmp_path / "empty", tmp_path / "ckpt", 5, events) is None  # nothing saved: no snapshot
    snapshot(source, tmp_path / "ckpt", 7, events)
    (source / "last.pt").write_bytes(b"newer")
    made = snapshot(source, tmp_path / "ckpt", 9, events)
    (made / "files.tar").write_bytes(b"torn")  # the newest is corrupt: the one before it is restored
    found = newest_local(tmp_path / "ckpt", events)
    assert found is not None and found.name == "step-000007"
    unpack(found, tmp_path / "restored")
    assert (tmp_path / "restored" / "last.pt").read_bytes() == b"weights"
    assert (tmp_path / "restored" / "sub" / "opt.pt").read_bytes() == b"moments"


def test_the_supervisor_logs_the_output_and_exits_with_the_commands_code(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    script = 'echo \'{"step": 3, "loss": 1.5}\'; echo \'{"step": 3, "top1": 0.5}\'; echo plain; exit 3'
    env = {**os.environ, "PYTHONPATH": str(REPO), "SPOTRAIN_IMDS_URL": "off", "OMP_NUM_THREADS": "1"}
    argv = ["--run-dir", str(run_dir), "--workdir", str(tmp_path), "--setup", "echo set up", "--", script]
    out = subprocess.run(
        [sys.executable, "-m", "trainer.usercmd", *argv], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 3, out.stderr
    assert out.stdout.splitlines()[-3:] == ['{"step": 3, "loss": 1.5}', '{"step": 3, "top1": 0.5}', "plain"]
    assert "set up" in out.stdout
    kinds = [(e["kind"], e.get("step")) for e in read_events(run_dir / "events.jsonl")]
    assert kinds == [("start", 0), ("step", 3), ("eval", 3), ("error", 3)]
    start = json.loads((run_dir / "events.jsonl").read_text().splitlines()[0])
    assert start["config"]["setup"] == "echo set up"


def test_a_sigterm_reaches_the_command_with_the_deadline_and_its_save_is_kept(tmp_path: Path) -> None:
    """SIGTERM to the supervisor (what `remote.stop` sends) is a notice: forwarded to the command, the
    deadline in the notice file first; the command saves and exits 75; the save becomes a snapshot (made
    at --checkpoint-every too while the command runs, once its directory changed) and 75 passes through."""
    run_dir = tmp_path / "run"
    script = (
        'trap \'cat "$SPOTRAIN_NOTICE_FILE" > notice.copy; echo saved > "$SPOTRAIN_CHECKPOINT_DIR/b"; exit 75\' TERM\n'
        'echo first > "$SPOTRAIN_CHECKPOINT_DIR/a"; echo \'{"step": 4, "loss": 1}\'\n'
        f"while [ ! -f {run_dir}/ckpt/LATEST ]; do sleep 0.05; done\n"  # the periodic snapshot came
        "echo ready\n"
        "while true; do sleep 0.05; done\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "SPOTRAIN_IMDS_URL": "off", "OMP_NUM_THREADS": "1"}
    argv = ["--run-dir", str(run_dir), "--workdir", str(tmp_path), "--checkpoint-every", "0.2", "--", script]
    proc = subprocess.Popen(
        [sys.executable, "-m", "trainer.usercmd", *argv], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        for line in proc.stdout:  # the command's own output, passed through as it comes
            if line.strip() == "ready":
                break
        proc.terminate()
        assert proc.wait(timeout=60) == 75
    finally:
        proc.kill()
    notice = json.loads((tmp_path / "notice.copy").read_text())
    assert notice["source"] == "sigterm" and notice["deadline"] > 0
    events = read_events(run_dir / "events.jsonl")
    local = [e["step"] for e in events if e["kind"] == "checkpoint"]
    assert local == [4, 5]  # the periodic one at its step 4, then the save on exit (a new snapshot)
    stop = events[-1]
    assert (stop["kind"], stop["source"], stop["step"]) == ("interruption", "sigterm", 4)
    found = newest_local(run_dir / "ckpt", EventLog(None))
    unpack(found, tmp_path / "restored")
    assert sorted(p.name for p in (tmp_path / "restored").iterdir()) == ["a", "b"]
