"""The replacement's trainer, warm while the attempt it replaces still trains: stdlib only, on the instance.

A detached run's group with Capacity Rebalancing launches a replacement as soon as its instance gets a
rebalance recommendation, before the notice (Amazon EC2 Auto Scaling User Guide, "Use Capacity
Rebalancing to handle Amazon EC2 Spot Interruptions": the group launches a new Spot Instance and waits
until it passes its health check before it terminates the previous one). The replacement's supervisor
finds the previous attempt live in the ledger (no end, a fresh heartbeat) and starts its trainer here:

    python -m onboard.standby RUN_DIR MODULES -m trainer.train ARGS...   (cwd: the bundle)

imports MODULES (comma-separated, the contract's WARM_MODULES; one that fails is skipped), then writes
RUN_DIR/warm (JSON: pid, t, imported) and waits for RUN_DIR/go, which the supervisor writes only once
the previous attempt's trainer stopped for its notice with its checkpoint mirrored (`stopped_at` in its
record, written by its supervisor's `StopWatch`), or it ended, or went silent (`Turn`): then it
runs the module as `python -m` would, in this same process (same pid; SIGTERM and the exit code as a
cold start). So no two attempts train at once, and the warm one resumes from the checkpoint the
previous one mirrored last. RUN_DIR/warm stays (the stand-in's and the tests' evidence); RUN_DIR/go
says when it went.
"""

from __future__ import annotations

import contextlib
import json
import os
import runpy
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .ledger import EXIT_DONE

POLL_S = 0.01
TURN_POLL_S = 0.1  # how often the supervisor reads the previous attempt's record while it waits
STOP_POLL_S = 0.05  # how often the supervisor reads its own trainer's events for its stop


def warm_path(run_dir: Path) -> Path:
    return Path(run_dir) / "warm"


def go_path(run_dir: Path) -> Path:
    return Path(run_dir) / "go"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def serve(run_dir: Path, modules: str, argv: list[str]) -> None:
    started, done = time.monotonic(), []
    for name in filter(None, modules.split(",")):
        try:
            __import__(name)
            done.append(name)
        except Exception as err:  # noqa: BLE001 - the trainer's own import says what is wrong, if it needs it
            print(f"spotrain standby: import {name} failed: {err}", file=sys.stderr)
    seconds = time.monotonic() - started
    marker = {"pid": os.getpid(), "t": time.time(), "imported": done, "import_s": round(seconds, 3)}
    _write_atomic(warm_path(run_dir), json.dumps(marker))
    print(f"spotrain standby: imported {', '.join(done) or 'nothing'} in {seconds:.1f} s", file=sys.stderr)
    while not go_path(run_dir).exists():
        time.sleep(POLL_S)
    print("spotrain standby: the go came; starting the trainer", file=sys.stderr, flush=True)
    if len(argv) >= 2 and argv[0] == "-m":
        sys.path[0] = os.getcwd()  # as `python -m` puts the current directory (the bundle) first
        sys.argv = [argv[1], *argv[2:]]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:  # a script (the tests' stub trainer), as `python SCRIPT` would run it
        sys.argv = list(argv)
        sys.path[0] = os.path.dirname(os.path.abspath(argv[0]))
        runpy.run_path(argv[0], run_name="__main__")


@dataclass
class Turn:
    """The previous attempt's record, read until it ended (or went silent, or the run ended)."""

    read: Any  # () -> (the previous attempt's AttemptRecord or None, the run has ended: bool)
    stale_s: float  # a heartbeat this old: the previous instance is gone without its end

    def wait(self, alive: Any, deadline_s: float) -> str:
        """Why the wait ended: 'stopped' (for its notice, the checkpoint mirrored), 'ended' (its end
        record), 'silent', 'run-ended', 'standby-died', 'timeout'."""
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if not alive():
                return "standby-died"
            prev, run_ended = self.read()
            if run_ended:
                return "run-ended"
            if prev is not None and prev.end is not None and prev.exit_code == EXIT_DONE:
                return "run-ended"  # it finished the run: nothing is left to train here
            if prev is None or prev.end is not None:
                return "ended"
            if prev.stopped_at is not None:
                return "stopped"  # stopped for its notice, its last checkpoint mirrored
            if time.time() - prev.heartbeat > self.stale_s:
                return "silent"
            time.sleep(TURN_POLL_S)
        return "timeout"


class StopWatch:
    """Tails the trainer's events.jsonl from byte `mark`: at its `interruption` event with the checkpoint
    mirrored (`uploaded`), calls `on_stop(t)` once. After that event the trainer writes no checkpoint
    and trains no step (trainer/interrupt.py: only the logs' upload, then exit 75)."""

    def __init__(self, run_dir: Path, mark: int, on_stop: Any) -> None:
        self.path, self.offset, self.on_stop = Path(run_dir) / "events.jsonl", mark, on_stop
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stop-watch", daemon=True)

    def __enter__(self) -> StopWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        partial = b""
        while not self._stop.wait(STOP_POLL_S):
            try:
                with self.path.open("rb") as f:
                    f.seek(self.offset)
                    data = f.read()
            except OSError:
                continue
            self.offset += len(data)
            *lines, partial = (partial + data).split(b"\n")
            for line in lines:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict) and event.get("kind") == "interruption" and event.get("uploaded"):
                    # A failed write: the end record still comes, and the replacement waits for it.
                    with contextlib.suppress(Exception):
                        self.on_stop(float(event.get("t") or time.time()))
                    return


def main(argv: list[str]) -> None:
    run_dir, modules, rest = Path(argv[0]), argv[1], argv[2:]
    run_dir.mkdir(parents=True, exist_ok=True)
    serve(run_dir, modules, rest)


if __name__ == "__main__":
    main(sys.argv[1:])
