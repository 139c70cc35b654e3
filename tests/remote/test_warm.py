"""The warm start (remote/warm.py): a warm process imports modules, then runs the trainer's command in
itself when handed it; anything it cannot run starts cold, as before."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

from helpers import wait_for

from spotrain.remote import Transport, process_status, start_trainer, start_warm, stop

from .test_run import exited

WARMED = "colorsys"  # a stdlib module a fresh python does not import: in sys.modules, it ran warm
PROBE = """import json, os, signal, sys, time
out = sys.argv[1]
def term(*_):
    open(out + ".term", "w").write("term")
    sys.exit(75)
signal.signal(signal.SIGTERM, term)
with open(out + ".tmp", "w") as f:
    json.dump({"pid": os.getpid(), "warmed": "colorsys" in sys.modules, "cwd": os.getcwd(),
               "argv": sys.argv[1:], "name": __name__, "env": os.environ.get("PROBE_ENV")}, f)
os.replace(out + ".tmp", out)
if "--wait" in sys.argv:
    end = time.monotonic() + 20
    while time.monotonic() < end:
        time.sleep(0.02)
sys.exit(int(os.environ.get("PROBE_EXIT", "3")))
"""


def bundle_with_probe(tmp_path: Path) -> Path:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "warmprobe.py").write_text(PROBE)
    return bundle


def warm_in(transport: Transport, run: Path, env: dict[str, str]) -> int:
    """A warm process in `run`, waiting for its go (its pid)."""
    started = start_warm(transport, python=sys.executable, modules=[WARMED], run_dir=str(run), env=env)
    wait_for(lambda: process_status(transport, str(run)).waiting, 10, "the warm process to wait")
    return started.pid


def probe(path: Path) -> dict:
    return json.loads(wait_for(lambda: path.exists() and path.read_text(), 10, f"{path}"))


def test_the_trainer_runs_in_the_warm_process_with_its_pid_log_and_exit_code(
    transport: Transport, tmp_path: Path
) -> None:
    run, out, bundle = tmp_path / "run", tmp_path / "probe.json", bundle_with_probe(tmp_path)
    env = {"PROBE_ENV": "x", "PROBE_EXIT": "75"}
    pid = warm_in(transport, run, env)

    argv = [sys.executable, "-m", "warmprobe", str(out)]
    started = start_trainer(transport, argv, run_dir=str(run), cwd=str(bundle), env=env)

    assert (started.warm, started.pid) == (True, pid)
    seen = probe(out)
    assert seen == {
        "pid": pid,
        "warmed": True,
        "cwd": str(bundle),
        "argv": [str(out)],
        "name": "__main__",
        "env": "x",
    }
    ended = exited(transport, str(run))
    assert (ended.exit_code, ended.pid, ended.waiting) == (75, pid, False)
    assert "spotrain warm: imported colorsys" in (run / "train.log").read_text()
    assert not (run / "warm").exists() and not (run / "go.json").exists()


def test_sigterm_reaches_the_trainer_that_started_warm(local: Transport, tmp_path: Path) -> None:
    run, out, bundle = tmp_path / "run", tmp_path / "probe.json", bundle_with_probe(tmp_path)
    warm_in(local, run, {})
    start_trainer(
        local, [sys.executable, "-m", "warmprobe", str(out), "--wait"], run_dir=str(run), cwd=str(bundle)
    )
    assert probe(out)["warmed"] is True  # its SIGTERM handler is in place

    ended = stop(local, str(run), grace_s=10)

    assert ended.exit_code == 75 and Path(f"{out}.term").read_text() == "term"


def test_a_dead_warm_process_falls_back_to_the_normal_start(local: Transport, tmp_path: Path) -> None:
    run, out, bundle = tmp_path / "run", tmp_path / "probe.json", bundle_with_probe(tmp_path)
    pid = warm_in(local, run, {})
    os.kill(pid, signal.SIGKILL)
    assert exited(local, str(run)).exit_code == 128 + signal.SIGKILL

    started = start_trainer(
        local, [sys.executable, "-m", "warmprobe", str(out)], run_dir=str(run), cwd=str(bundle)
    )

    assert (started.warm, started.cold_why) == (False, "the warm process is gone")
    seen = probe(out)
    assert (seen["pid"], seen["warmed"]) == (started.pid, False) and started.pid != pid
    assert exited(local, str(run)).exit_code == 3


def test_another_environment_or_command_is_started_cold_and_the_warm_process_ended(
    local: Transport, tmp_path: Path
) -> None:
    bundle = bundle_with_probe(tmp_path)
    cases = {
        "env": ({"PROBE_ENV": "other"}, [sys.executable, "-m", "warmprobe"]),
        "argv": ({}, [sys.executable, str(bundle / "warmprobe.py")]),
    }
    for name, (env, argv) in cases.items():
        run, out = tmp_path / f"run-{name}", tmp_path / f"probe-{name}.json"
        pid = warm_in(local, run, {})

        started = start_trainer(local, [*argv, str(out)], run_dir=str(run), cwd=str(bundle), env=env)

        assert started.warm is False and started.pid != pid, name
        assert started.cold_why.startswith({"env": "the environment", "argv": "the command"}[name])
        assert probe(out)["warmed"] is False
        assert exited(local, str(run)).exit_code == 3


def test_no_warm_process_is_the_normal_start(local: Transport, tmp_path: Path) -> None:
    run, out, bundle = tmp_path / "run", tmp_path / "probe.json", bundle_with_probe(tmp_path)

    started = start_trainer(
        local, [sys.executable, "-m", "warmprobe", str(out)], run_dir=str(run), cwd=str(bundle)
    )

    assert (started.warm, started.cold_why) == (False, "no warm process")
    assert exited(local, str(run)).exit_code == 3 and probe(out)["warmed"] is False
