"""Start the trainer detached on the instance, ask how it is doing, stop it.

The agent double-forks a supervisor into a new session, detached from the SSH channel, that starts the
command (in its own process group, output appended to RUN/train.log) and writes RUN/pid, then, when the
command ends, RUN/exit_code (atomically, last). So the process outlives the connection and the laptop,
and how it ended can be read back at any later time, from any new connection.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from spotrain.remote.base import RemoteError, Transport, call_agent

State = Literal["absent", "running", "exited", "lost"]
_ALREADY_RUNNING = 3
WARM_SOURCE = Path(__file__).with_name("warm.py").read_text(encoding="utf-8")  # run as `python -c`


class AlreadyRunning(RemoteError):
    """A process started in this run directory is still alive; a second one is not started."""


@dataclass(frozen=True)
class ProcessStatus:
    """absent: never started here; running; exited (exit_code set); lost: it died without a record
    (the supervisor was killed or the machine rebooted)."""

    state: State
    pid: int | None
    exit_code: int | None  # 128 + N when killed by signal N
    signal: int | None
    started_at: float | None
    ended_at: float | None
    waiting: bool = False  # a warm process (remote/warm.py) that has not been given its go yet

    @property
    def running(self) -> bool:
        return self.state == "running"


@dataclass(frozen=True)
class DetachedProcess:
    pid: int
    run_dir: str
    log_path: str  # RUN/train.log: the command's stdout and stderr
    events_path: str  # RUN/events.jsonl: written by the trainer itself
    warm: bool = False  # started in a warm process (start_trainer)
    cold_why: str = ""  # why a warm process there was not used, if one was asked


def start_detached(
    transport: Transport,
    argv: Sequence[str],
    *,
    run_dir: str,
    cwd: str,
    env: Mapping[str, str] | None = None,
) -> DetachedProcess:
    """Start `argv` in `cwd`, detached. Refuses (AlreadyRunning) if RUN's last process is alive."""
    if not argv:
        raise ValueError("argv is empty")
    # The environment goes on stdin, not the command line: a command line shows in ps, in timeout and
    # error messages (and from there in the run's events), and a Linux argument is at most 128 KiB
    args = ["launch", run_dir, cwd, "-", "--", *argv]
    result = call_agent(transport, args, stdin=json.dumps(dict(env or {})).encode(), timeout=60)
    if result.exit_code == _ALREADY_RUNNING:
        raise AlreadyRunning(
            f"{transport.name}: {result.stderr.decode(errors='replace').strip()}",
            hint="watch it (spotrain logs) or stop it first (spotrain down)",
        )
    pid = json.loads(result.check().stdout)["pid"]
    run = run_dir.rstrip("/")
    return DetachedProcess(pid, run_dir, f"{run}/train.log", f"{run}/events.jsonl")


def process_status(transport: Transport, run_dir: str) -> ProcessStatus:
    """How the process last started in `run_dir` is doing, read from its files and /proc."""
    return _status(call_agent(transport, ["status", run_dir], timeout=60).check().stdout)


def stop(transport: Transport, run_dir: str, *, grace_s: float = 30.0) -> ProcessStatus:
    """SIGTERM the process; after `grace_s` seconds still alive, SIGKILL its whole process group."""
    result = call_agent(transport, ["stop", run_dir, f"{grace_s:g}"], timeout=grace_s + 60)
    return _status(result.check().stdout)


def _status(raw: bytes) -> ProcessStatus:
    d = json.loads(raw)
    return ProcessStatus(
        state=d["state"],
        pid=d.get("pid"),
        exit_code=d.get("exit_code"),
        signal=d.get("signal"),
        started_at=d.get("started_at"),
        ended_at=d.get("ended_at"),
        waiting=bool(d.get("waiting")),
    )


def env_digest(env: Mapping[str, str]) -> str:
    """What the warm process keeps of its environment: a hash, since the values may be secrets."""
    return hashlib.sha256(json.dumps(dict(env), sort_keys=True).encode()).hexdigest()


def start_warm(
    transport: Transport,
    *,
    python: str,
    modules: Sequence[str],
    run_dir: str,
    env: Mapping[str, str] | None = None,
) -> DetachedProcess:
    """Start a warm process in `run_dir` (detached, supervised as any start: RUN/pid, train.log,
    exit_code): `python` imports `modules`, then waits for start_trainer's go. AlreadyRunning if RUN's
    last process is alive (an adopted instance's trainer)."""
    argv = [python, "-c", WARM_SOURCE, "serve", run_dir, python, env_digest(env or {}), ",".join(modules)]
    return start_detached(transport, argv, run_dir=run_dir, cwd=run_dir, env=env)


def start_trainer(
    transport: Transport,
    argv: Sequence[str],
    *,
    run_dir: str,
    cwd: str,
    env: Mapping[str, str] | None = None,
) -> DetachedProcess:
    """Start `argv` as start_detached does, in RUN's warm process when one waits there for this same
    python and environment (the returned process says `warm`); otherwise (none, dead, another command)
    that one is ended and `argv` starts cold, the reason in `cold_why`."""
    order = {"argv": list(argv), "cwd": cwd, "env": env_digest(env or {})}
    go = f"{transport.python} -S -c {shlex.quote(WARM_SOURCE)} go {shlex.quote(run_dir)}"
    answer = json.loads(transport.exec(go, stdin=json.dumps(order).encode(), timeout=60).check().stdout)
    run = run_dir.rstrip("/")
    if answer["warm"]:
        return DetachedProcess(answer["pid"], run_dir, f"{run}/train.log", f"{run}/events.jsonl", warm=True)
    started = start_detached(transport, argv, run_dir=run_dir, cwd=cwd, env=env)
    return DetachedProcess(
        started.pid, run_dir, started.log_path, started.events_path, cold_why=answer["why"]
    )
