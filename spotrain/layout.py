"""Where a run's things live and how its trainer is started: paths on the instance (the cloud's workdir
holds `bundle/`, owned by sync, and `runs/RUN/` beside it, never inside), files in the state
directory (each attempt's log, the per-run lock), the trainer's command line, and the crash points the
kill-and-resume tests use."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from spotrain.errors import SpotrainError

TRAINER_DIR = Path(__file__).resolve().parent.parent / "trainer"
BUNDLE, RUNS = "bundle", "runs"
DATA_DIR = "/opt/spotrain/data"  # where the data set is when the instance's ready marker does not say
BOOTSTRAP = Path(__file__).resolve().parent.parent / "infra" / "bootstrap.sh"
READY, BOOT_FAILED = "/opt/spotrain/ready", "/opt/spotrain/failed"  # written by infra/bootstrap.sh


def user_data(spec: dict[str, Any]) -> str:
    """The instance's user data: the run's settings as `export` lines, then infra/bootstrap.sh, which
    prepares the data and writes the ready marker the controller waits for."""
    script = BOOTSTRAP.read_text(encoding="utf-8")
    exports = []
    if str(spec.get("data") or "").startswith("s3://"):
        exports.append(f"export SPOTRAIN_DATA_S3={shlex.quote(spec['data'])}")
    body = script.split("\n", 1)[1] if script.startswith("#!") else script
    return "#!/usr/bin/env bash\n" + "".join(line + "\n" for line in exports) + body


def parse_ready(text: str) -> dict[str, str]:
    """The ready marker's NAME=value lines (SPOTRAIN_PYTHON, SPOTRAIN_DATA)."""
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs}


def trainer_argv(
    spec: dict[str, Any],
    *,
    run_id: str,
    run_dir: str,
    bucket: str,
    python: str,
    gpus: int,
    data_dir: str = DATA_DIR,
) -> list[str]:
    """The trainer's command line (DESIGN.md's contract): always --resume auto, mirrored to the run's prefix."""
    args = [
        "-m",
        "trainer.train",
        "--recipe",
        spec["recipe"],
        "--run-dir",
        run_dir,
        "--resume",
        "auto",
        "--mirror",
        f"s3://{bucket}/runs/{run_id}",
        "--seed",
        str(spec.get("seed", 0)),
        "--checkpoint-every",
        str(spec.get("checkpoint_seconds") or 600),
    ]
    for flag, key in (("--target-acc", "target_acc"), ("--max-epochs", "max_epochs")):
        if spec.get(key) is not None:
            args += [flag, str(spec[key])]
    if spec.get("data"):
        args += ["--data", data_dir]
    if gpus > 1:  # trainer.launch is torchrun that passes the workers' exit code (75) through
        return [python, "-m", "trainer.launch", "--standalone", f"--nproc_per_node={gpus}", *args]
    return [python, *args]


def crash_point(name: str) -> None:
    """Fault injection for the kill-and-resume tests: with SPOTRAIN_CRASH_AT=name the controller dies
    here exactly as under SIGKILL (no cleanup, no finally), so each state's restart path is proven."""
    if os.environ.get("SPOTRAIN_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


def run_paths(workdir: str, run_id: str) -> tuple[str, str]:
    root = workdir.rstrip("/")
    return f"{root}/{RUNS}/{run_id}", f"{root}/{BUNDLE}"


def log_path(state_dir: Path, run_id: str, attempt: int) -> Path:
    return Path(state_dir) / "logs" / run_id / f"attempt-{attempt}.log"


@contextlib.contextmanager
def run_lock(state_dir: Path, run_id: str) -> Iterator[None]:
    """One controller per run: an exclusive lock file in the state directory, released on exit (or death)."""
    import fcntl  # POSIX only: imported here so that the controller still imports on Windows

    locks = Path(state_dir) / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / f"{run_id}.lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise SpotrainError(
                f"run {run_id} is already driven by another controller ({f.read().strip()})",
                f"watch it with `spotrain logs {run_id} -f`, or stop that process first",
            ) from None
        f.seek(0), f.truncate(), f.write(f"pid {os.getpid()}"), f.flush()
        yield


@contextlib.contextmanager
def run_lock_if_free(state_dir: Path, run_id: str) -> Iterator[bool]:
    """The run's lock for this block if no controller holds it (True), else False: that controller
    watches the run. For a reader that may catch a run up (`status`) but must never compete with its
    controller; a controller started during the block is refused as by any other holder."""
    import fcntl

    locks = Path(state_dir) / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / f"{run_id}.lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        f.seek(0), f.truncate(), f.write(f"pid {os.getpid()}, a reader catching the run up"), f.flush()
        yield True
