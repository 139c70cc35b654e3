"""`down` at the edges (issue 11, items 3 and 4) and Ctrl-C: `down RUN` wins over a launch that is
watching the run; `down --all` sweeps the dry-run's leftovers on the dry-run's own cloud, never AWS;
Ctrl-C stops the watching, not the run."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from .cli import REPO, spotrain
from .edges import runs

LONG = (
    "launch",
    "--dry-run",
    "--recipe",
    "digits",
    "-y",
    "--boot-delay",
    "0.2",
    "--max-epochs",
    "60",
    "--target-acc",
    "1.0",
)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def aws_at_a_closed_port(tmp: Path) -> dict[str, str]:
    """Environment that sends every real-AWS client to a closed loopback port (the profile's
    endpoint_url), so a call to AWS fails the command instead of leaving the machine. The dry-run's
    own session reads its own config file and is not affected."""
    config = tmp / "aws-config"
    config.write_text(f"[default]\nregion = us-east-1\nendpoint_url = http://127.0.0.1:{closed_port()}\n")
    return {"AWS_CONFIG_FILE": str(config)}


def start(*args: str, home: Path) -> subprocess.Popen:
    """`spotrain ARGS` in the background, as tests/e2e/cli.py runs it."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "SPOTRAIN_HOME": str(home)}
    env.pop("SPOTRAIN_CRASH_AT", None)
    return subprocess.Popen(
        [sys.executable, "-m", "spotrain.cli", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def training(home: Path, deadline_s: float = 120) -> dict:
    """The one run, once the store has a training step of it (polled, with a deadline)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        found = runs(home) if (home / "dry-run" / "state.db").exists() else []
        if found and found[0]["state"] == "training" and (found[0].get("epoch") or 0) > 0:
            return found[0]
        time.sleep(0.2)
    raise AssertionError(f"no training step within {deadline_s} s: {found}")


def pause_trainer(home: Path, run_id: str) -> int:
    """SIGSTOP the run's trainer, so it cannot finish on its own while the test acts (down kills it)."""
    (pid_file,) = (home / "dry-run" / "instances").glob(f"*/spotrain/runs/{run_id}/pid")
    pid = int(pid_file.read_text())
    os.kill(pid, signal.SIGSTOP)
    return pid


def instance_records(home: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in (home / "dry-run" / "instances").glob("*.json")]


def test_down_wins_over_the_launch_watching_the_run(tmp_path: Path) -> None:
    watcher = start(*LONG, home=tmp_path)
    try:
        run = training(tmp_path)
        pause_trainer(tmp_path, run["run"])
        down = spotrain("down", run["run"], "-y", home=tmp_path)
        assert down.returncode == 0, down.stderr
        out, err = watcher.communicate(timeout=120)
    finally:
        watcher.kill()
    assert watcher.returncode == 3, out[-3000:] + err[-2000:]
    assert f"run {run['run']}: cancelled by `spotrain down`" in out
    assert "exited 137" not in out and "FAILED" not in out, out[-3000:]
    (after,) = runs(tmp_path)
    assert after["state"] == "cancelled", after


def test_down_all_sweeps_the_dry_run_and_never_calls_aws(tmp_path: Path) -> None:
    killed = spotrain(*LONG, home=tmp_path, env={"SPOTRAIN_CRASH_AT": "training"})
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert [r["state"] for r in instance_records(tmp_path)] == ["running"]
    down = spotrain("down", "--all", "-y", home=tmp_path, env=aws_at_a_closed_port(tmp_path))
    assert down.returncode == 0, down.stdout + down.stderr
    (run,) = runs(tmp_path)
    assert f"dry-run: cancelled {run['run']}" in down.stdout and "aws" not in down.stdout, down.stdout
    assert [r["state"] for r in instance_records(tmp_path)] == ["terminated"]
    assert run["state"] == "cancelled"


def test_ctrl_c_stops_watching_and_the_run_goes_on(tmp_path: Path) -> None:
    watcher = start(*LONG, home=tmp_path)
    try:
        run = training(tmp_path)
        pid = pause_trainer(tmp_path, run["run"])
        watcher.send_signal(signal.SIGINT)
        out, err = watcher.communicate(timeout=60)
    finally:
        watcher.kill()
    assert watcher.returncode == 130, out[-2000:] + err[-2000:]
    assert f"run {run['run']} goes on" in out and f"spotrain resume {run['run']}" in out, out[-2000:]
    assert f"spotrain down {run['run']}" in out and "aborted" not in err
    (after,) = runs(tmp_path)
    assert after["state"] == "training"  # not ended by the Ctrl-C
    assert [r["state"] for r in instance_records(tmp_path)] == ["running"]
    os.kill(pid, 0)  # the trainer is alive (paused by the test, not killed by the Ctrl-C)
    assert spotrain("down", run["run"], "-y", home=tmp_path).returncode == 0


def test_down_while_the_instance_boots_starts_no_trainer(tmp_path: Path) -> None:
    # A boot far longer than any machine needs to run `down`: the watcher's boot wait ends when the
    # instance is terminated, not by the clock (8 s raced a loaded machine's `down`).
    booting = ("launch", "--dry-run", "--recipe", "digits", "-y", "--boot-delay", "200")
    watcher = start(*booting, home=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = runs(tmp_path) if (tmp_path / "dry-run" / "state.db").exists() else []
            if found and found[0]["state"] == "provisioning":
                break
            time.sleep(0.1)
        assert found and found[0]["state"] == "provisioning", found
        assert spotrain("down", found[0]["run"], "-y", home=tmp_path).returncode == 0
        out, err = watcher.communicate(timeout=60)
    finally:
        watcher.kill()
    assert watcher.returncode == 3, out[-2000:] + err[-2000:]
    assert not list((tmp_path / "dry-run" / "instances").glob("*/spotrain/runs/*/pid"))  # never started
    assert [r["state"] for r in instance_records(tmp_path)] == ["terminated"]
