"""Detached processes: they outlive the connection that started them and say how they ended."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
from helpers import wait_for

from spotrain.remote import (
    AlreadyRunning,
    LocalTransport,
    ProcessStatus,
    RemoteCommandError,
    Transport,
    process_status,
    read_tail,
    start_detached,
    stop,
)

from .conftest import ssh_to

WAIT_FOR_FILE = "import os, sys, time\nwhile not os.path.exists(sys.argv[1]): time.sleep(0.02)\n"


def exited(transport: Transport, run_dir: str) -> ProcessStatus:
    """The process's status once it has exited (AssertionError after 10 s)."""

    def ended() -> ProcessStatus | None:
        status = process_status(transport, run_dir)
        return status if status.state == "exited" else None

    return wait_for(ended, 10, f"the process in {run_dir} to exit")


def text_in(path: Path, text: str) -> bool:
    return path.exists() and text in path.read_text()


def test_a_detached_process_outlives_its_connection_and_its_exit_code_is_read_later(
    sshd, tmp_path: Path
) -> None:
    run, go = tmp_path / "run", tmp_path / "go"
    script = WAIT_FOR_FILE + "print('finished', flush=True)\nsys.exit(7)\n"
    first = ssh_to(sshd, tmp_path)
    proc = start_detached(first, [sys.executable, "-c", script, str(go)], run_dir=str(run), cwd=str(tmp_path))
    first.close()  # the laptop goes away

    os.kill(proc.pid, 0)  # still alive on "the instance"
    second = ssh_to(sshd, tmp_path)
    assert process_status(second, str(run)).state == "running"
    go.touch()
    ended = exited(second, str(run))
    assert (ended.state, ended.exit_code, ended.pid) == ("exited", 7, proc.pid)
    assert read_tail(second, proc.log_path) == ["finished"]
    assert (run / "pid").read_text().strip() == str(proc.pid) and (run / "exit_code").read_text() == "7\n"
    second.close()


def test_stop_sends_sigterm_first(transport: Transport, tmp_path: Path) -> None:
    run = tmp_path / "run"
    script = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: (print('saving', flush=True), sys.exit(75)))\n"
        "print('ready', flush=True)\nwhile True: time.sleep(0.05)\n"
    )
    start_detached(transport, [sys.executable, "-c", script], run_dir=str(run), cwd=str(tmp_path))
    wait_for(lambda: text_in(run / "train.log", "ready"), 10, "ready in train.log")
    ended = stop(transport, str(run), grace_s=10)
    assert (ended.state, ended.exit_code, ended.signal) == ("exited", 75, None)
    assert (run / "train.log").read_text() == "ready\nsaving\n"


def test_stop_kills_what_ignores_sigterm(transport: Transport, tmp_path: Path) -> None:
    run = tmp_path / "run"
    script = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ready', flush=True)\ntime.sleep(60)\n"
    start_detached(transport, [sys.executable, "-c", script], run_dir=str(run), cwd=str(tmp_path))
    wait_for(lambda: text_in(run / "train.log", "ready"), 10, "ready in train.log")
    start = time.monotonic()
    ended = stop(transport, str(run), grace_s=0.5)
    assert (ended.state, ended.exit_code, ended.signal) == ("exited", 137, 9)
    assert time.monotonic() - start < 5


def test_a_second_start_in_the_same_run_dir_is_refused(transport: Transport, tmp_path: Path) -> None:
    run, go = tmp_path / "run", tmp_path / "go"
    argv = [sys.executable, "-c", WAIT_FOR_FILE, str(go)]
    first = start_detached(transport, argv, run_dir=str(run), cwd=str(tmp_path))
    with pytest.raises(AlreadyRunning, match=str(first.pid)):
        start_detached(transport, argv, run_dir=str(run), cwd=str(tmp_path))
    go.touch()
    exited(transport, str(run))
    second = start_detached(transport, argv, run_dir=str(run), cwd=str(tmp_path))  # ended: may start again
    assert second.pid != first.pid
    exited(transport, str(run))


def test_cwd_and_env_reach_the_process(transport: Transport, tmp_path: Path) -> None:
    run, work = tmp_path / "run", tmp_path / "bundle"
    work.mkdir()
    script = "import os; print(os.getcwd(), os.environ['SPOTRAIN_IMDS_URL'])"
    env = {"SPOTRAIN_IMDS_URL": "http://127.0.0.1:9"}
    start_detached(transport, [sys.executable, "-c", script], run_dir=str(run), cwd=str(work), env=env)
    ended = exited(transport, str(run))
    assert ended.exit_code == 0
    assert read_tail(transport, str(run / "train.log")) == [f"{work} http://127.0.0.1:9"]


class Recording:
    """A transport that keeps every command line it runs (what ps, errors and timeouts would show)."""

    def __init__(self, inner: Transport) -> None:
        self.inner, self.commands = inner, []

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def exec(self, command: str, **kwargs):
        self.commands.append(command)
        return self.inner.exec(command, **kwargs)


def test_env_values_reach_the_process_but_never_a_command_line(transport: Transport, tmp_path: Path) -> None:
    run, work = tmp_path / "run", tmp_path / "bundle"
    work.mkdir()
    recording = Recording(transport)
    script = "import os; print(os.environ['DB_PASS'])"
    env = {"DB_PASS": "pa55-only-in-env"}
    start_detached(recording, [sys.executable, "-c", script], run_dir=str(run), cwd=str(work), env=env)
    ended = exited(transport, str(run))
    assert ended.exit_code == 0
    assert read_tail(transport, str(run / "train.log")) == ["pa55-only-in-env"]
    assert recording.commands and not any("pa55" in c for c in recording.commands)


def test_a_command_that_cannot_start_is_reported(transport: Transport, tmp_path: Path) -> None:
    with pytest.raises(RemoteCommandError, match="cannot start /nonexistent/python"):
        start_detached(
            transport, ["/nonexistent/python", "-V"], run_dir=str(tmp_path / "run"), cwd=str(tmp_path)
        )
    assert process_status(transport, str(tmp_path / "never")).state == "absent"


def test_a_home_relative_run_dir_in_argv_is_the_same_directory_the_agent_uses(tmp_path: Path) -> None:
    # Issue 13 item 2: AwsCloud's workdir is "~/spotrain", so the trainer gets `--run-dir ~/spotrain/runs/R`.
    # Popen runs it without a shell, so unless the agent expands it the trainer writes under
    # cwd/~/spotrain/runs/R while the controller follows ~/spotrain/runs/R (a file that never appears).
    from spotrain.cloud.aws.cloud import AwsCloud
    from spotrain.contract import run_paths

    home = tmp_path / "home"
    instance = LocalTransport(home, state_dir="~/.spotrain-remote")
    run_dir, bundle = run_paths(AwsCloud(regions=["us-east-1"]).workdir("i-1"), "R")
    assert run_dir.startswith("~/")
    (home / "spotrain" / "bundle").mkdir(parents=True)
    script = "import pathlib, sys\np = pathlib.Path(sys.argv[1]) / 'events.jsonl'\np.write_text('{}')\n"
    start_detached(instance, [sys.executable, "-c", script, run_dir], run_dir=run_dir, cwd=bundle)
    ended = exited(instance, run_dir)
    assert (ended.state, ended.exit_code) == ("exited", 0), read_tail(instance, f"{run_dir}/train.log")
    assert (home / "spotrain" / "runs" / "R" / "events.jsonl").exists()
    assert not (home / "spotrain" / "bundle" / "~").exists()
