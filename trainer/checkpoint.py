"""Atomic, asynchronous, verified checkpoints.

Layout (ARCHITECTURE.md's contract): `ckpt/step-000123/` holds the state files and `manifest.json` (sha256 and
size of each file); it is written under a temporary name and renamed when complete, and `ckpt/LATEST`,
naming the newest complete one, is replaced last. Saving copies the state to host memory (the only part
that blocks the loop) and a background thread writes it while training goes on. Loading verifies the
manifest and falls back to the previous checkpoint, with a warning event, when one is partial or corrupt.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainer import TrainerError
from trainer.events import EventLog

LATEST = "LATEST"
MANIFEST = "manifest.json"
STEP_DIR = re.compile(r"^step-(\d+)$")


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint, so a resume continues at the same sample."""

    step: int = 0  # optimizer steps taken
    epoch: int = 0  # current epoch (0-based)
    batch: int = 0  # next batch of the current epoch
    images_seen: int = 0  # training images seen, all ranks together
    best: float = 0.0  # best value of the target metric so far


def step_dir_name(step: int) -> str:
    return f"step-{step:06d}"


def step_of(name: str) -> int | None:
    match = STEP_DIR.match(name)
    return int(match.group(1)) if match else None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def to_host(obj: Any) -> Any:
    """A deep copy with every tensor on the CPU, so training can go on changing the originals."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: to_host(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_host(v) for v in obj)
    return obj


# ----------------------------------------------------------------------------------------------------
# RNG state, in types that torch.load(weights_only=True) accepts
def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ----------------------------------------------------------------------------------------------------
# Saving
class Checkpointer:
    """Writes checkpoints under `root` (one in flight at a time) and keeps the newest `keep`."""

    def __init__(
        self, root: Path, events: EventLog, keep: int = 3, on_complete: Callable[[Path], None] | None = None
    ) -> None:
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            # Refused, not moved aside: the file is not the trainer's (it only ever makes a directory
            # there), so it is the user's to keep or delete; and refusing here, before the first step,
            # costs no compute, where the first save would otherwise fail mid-run with a traceback.
            raise TrainerError(
                f"{self.root} is a file, not a directory; the trainer keeps its checkpoints there",
                f"move or delete {self.root}, or pass another --run-dir",
            )
        self.events = events
        self.keep = max(1, keep)
        self.on_complete = on_complete
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def save(self, step: int, files: dict[str, Any], blocking: bool = False) -> float:
        """Snapshot `files` (name -> state object) for `step`; returns the seconds the caller was blocked."""
        t0 = time.perf_counter()
        self.wait()
        snapshot = to_host(files)
        blocked_s = time.perf_counter() - t0
        if blocking:
            self._write(step, snapshot, blocked_s)
            self.wait()
            return time.perf_counter() - t0
        self._thread = threading.Thread(
            target=self._write_guarded,
            args=(step, snapshot, blocked_s),
            name="checkpoint-writer",
            daemon=True,
        )
        self._thread.start()
        return blocked_s

    def wait(self) -> None:
        """Wait for the write in flight; a failure in it is raised here, not lost."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    def _write_guarded(self, step: int, snapshot: dict[str, Any], blocked_s: float) -> None:
        try:
            self._write(step, snapshot, blocked_s)
        except BaseException as err:  # re-raised on the training thread by wait()
            self._error = err

    def _write(self, step: int, snapshot: dict[str, Any], blocked_s: float) -> None:
        t0 = time.perf_counter()
        self.root.mkdir(parents=True, exist_ok=True)
        name = step_dir_name(step)
        final, tmp = self.root / name, self.root / f".tmp-{name}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        manifest: dict[str, Any] = {"step": step, "created": time.time(), "files": {}}
        for filename, obj in snapshot.items():
            path = tmp / filename
            with open(path, "wb") as f:
                torch.save(obj, f)
                f.flush()
                os.fsync(f.fileno())
            manifest["files"][filename] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
        _write_durable(tmp / MANIFEST, json.dumps(manifest, indent=1))
        if final.exists():  # the same step saved again (e.g. the final save right after a periodic one)
            shutil.rmtree(final)
        os.replace(tmp, final)
        _write_durable(self.root / LATEST, name + "\n")  # last: LATEST only ever names a complete one
        self._prune(keep_name=name)
        total = sum(f["bytes"] for f in manifest["files"].values())
        self.events.write(
            "checkpoint",
            step=step,
            bytes=total,
            blocked_s=round(blocked_s, 4),
            write_s=round(time.perf_counter() - t0, 4),
            path=name,
            where="local",
        )
        if self.on_complete is not None:
            self.on_complete(final)

    def _prune(self, keep_name: str) -> None:
        names = sorted((p.name for p in self.root.iterdir() if step_of(p.name) is not None), key=step_of)
        for old in names[: -self.keep]:
            if old != keep_name:
                shutil.rmtree(self.root / old, ignore_errors=True)


def _write_durable(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


# ----------------------------------------------------------------------------------------------------
# Loading
def verify(directory: Path) -> str | None:
    """None when the checkpoint at `directory` is complete and intact, else what is wrong with it."""
    if not directory.is_dir():
        return "directory is missing"
    try:
        manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        return f"no readable manifest ({err.__class__.__name__})"
    for filename, info in files.items():
        path = directory / filename
        if not path.is_file():
            return f"{filename} is missing"
        if path.stat().st_size != info["bytes"]:
            return (
                f"{filename} has {path.stat().st_size} bytes, the manifest says {info['bytes']} (truncated?)"
            )
        if sha256_file(path) != info["sha256"]:
            return f"{filename} does not match its sha256 in the manifest"
    return None


def candidates(root: Path, prefer: str | None = None, events: EventLog | None = None) -> list[str]:
    """Checkpoint names to try, best first: `prefer` or else the one LATEST names, then the others,
    newest first. A LATEST that does not name a checkpoint directory (not UTF-8, not `step-N`, a
    directory) is only a pointer gone bad: the intact checkpoints beside it are still there, so it is
    passed over with a warning event (to `events`) and the directories are tried newest first."""
    names = sorted((p.name for p in root.iterdir() if step_of(p.name) is not None), key=step_of, reverse=True)
    first = prefer
    if first is None:
        first, problem = _read_latest(root / LATEST)
        if problem is not None and events is not None:
            events.write(
                "warning",
                message=f"{root / LATEST} {problem}; trying the checkpoints newest first: "
                + (", ".join(names) or "none"),
                checkpoint=LATEST,
            )
    return ([first] if first else []) + [n for n in names if n != first]


def _read_latest(path: Path) -> tuple[str, str | None]:
    """The checkpoint name LATEST holds ("" when it holds none), and what is wrong with it, if anything.
    A missing LATEST is no problem: the writer renames a checkpoint before it writes LATEST."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return "", None
    except OSError as err:
        return "", f"cannot be read ({err.__class__.__name__})"
    try:
        name = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        return "", "is not UTF-8 text"
    if STEP_DIR.fullmatch(name) is None:  # a name only: never a path out of root
        return "", f"does not name a checkpoint ({name[:40]!r})"
    return name, None


def load_latest(
    root: Path, events: EventLog, map_location: str | torch.device = "cpu", prefer: str | None = None
) -> tuple[Path, dict[str, Any]] | None:
    """The newest intact checkpoint under `root` and its loaded files; None when there is none.
    Each one skipped is reported as a warning event naming what was wrong."""
    if not Path(root).is_dir():
        return None
    for name in candidates(Path(root), prefer, events):
        directory = Path(root) / name
        problem = verify(directory)
        if problem is None:
            try:
                files = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))["files"]
                return directory, {
                    f: torch.load(directory / f, map_location=map_location, weights_only=True) for f in files
                }
            except Exception as err:  # noqa: BLE001 - any unreadable file means: try the previous one
                problem = f"could not be loaded ({err.__class__.__name__}: {err})"
        events.write(
            "warning",
            message=f"checkpoint {name} skipped: {problem}; trying the previous one",
            checkpoint=name,
        )
    return None
