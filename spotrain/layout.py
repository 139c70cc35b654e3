"""A run's files in the state directory (each attempt's kept log, the per-run lock) and the crash points
the kill-and-resume tests use. What is on the instance (paths, the trainer's command line, the ready
marker) is spotrain/contract.py."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

from spotrain.errors import SpotrainError


def log_path(state_dir: Path, run_id: str, attempt: int) -> Path:
    return Path(state_dir) / "logs" / run_id / f"attempt-{attempt}.log"


def node_log_path(state_dir: Path, run_id: str, attempt: int, node: int) -> Path:
    """Where node `node`'s train.log of a multi-node attempt is kept (node 0's is the attempt's own)."""
    path = log_path(state_dir, run_id, attempt)
    return path if node == 0 else path.with_name(f"{path.stem}.node-{node}.log")


@contextlib.contextmanager
def _run_lock(state_dir: Path, run_id: str, holder: str) -> Iterator[str | None]:
    """The run's lock file, taken without waiting: None while this process holds it (the file then
    names `holder`), else what the holder wrote there."""
    import fcntl  # POSIX only: imported here so that the controller still imports on Windows

    locks = Path(state_dir) / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / f"{run_id}.lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            yield f.read().strip()
            return
        f.seek(0), f.truncate(), f.write(holder), f.flush()
        yield None


@contextlib.contextmanager
def run_lock(state_dir: Path, run_id: str) -> Iterator[None]:
    """One controller per run: an exclusive lock file in the state directory, released on exit (or death)."""
    with _run_lock(state_dir, run_id, f"pid {os.getpid()}") as held_by:
        if held_by is not None:
            raise SpotrainError(
                f"run {run_id} is already driven by another controller ({held_by})",
                f"watch it with `spotrain logs {run_id} -f`, or stop that process first",
            )
        yield


@contextlib.contextmanager
def run_lock_if_free(state_dir: Path, run_id: str) -> Iterator[bool]:
    """The run's lock for this block if no controller holds it (True), else False: that controller
    watches the run. For a reader that may catch a run up (`status`) but must never compete with its
    controller; a controller started during the block is refused as by any other holder."""
    with _run_lock(state_dir, run_id, f"pid {os.getpid()}, a reader catching the run up") as held_by:
        yield held_by is None


def crash_point(name: str) -> None:
    """Fault injection for the kill-and-resume tests: with SPOTRAIN_CRASH_AT=name the controller dies
    here exactly as under SIGKILL (no cleanup, no finally), so each state's restart path is proven."""
    if os.environ.get("SPOTRAIN_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
