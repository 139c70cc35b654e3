"""Small helpers for the loop: the human-readable log and the hash of the trainer's own code."""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from pathlib import Path

TRAINER_DIR = Path(__file__).resolve().parent


def code_hash() -> str:
    """sha256 over the trainer's source files (path and bytes), so every result names the code behind it."""
    digest = hashlib.sha256()
    for path in sorted(TRAINER_DIR.rglob("*.py")):
        digest.update(path.relative_to(TRAINER_DIR).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def make_logger(path: Path | None) -> logging.Logger:
    """train.log and stdout on rank 0; other ranks log warnings only, to stderr."""
    log = logging.getLogger(f"trainer.{id(path)}")
    log.handlers.clear()
    log.propagate = False
    fmt = logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S")
    if path is None:
        log.setLevel(logging.WARNING)
        handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    else:
        log.setLevel(logging.INFO)
        handlers = [logging.StreamHandler(sys.stdout)]
        if not _stdout_is(path):  # the controller's detached start already sends stdout to train.log
            handlers.append(logging.FileHandler(path, encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(fmt)
        log.addHandler(handler)
    return log


def _stdout_is(path: Path) -> bool:
    """Whether our stdout already writes to `path` (same file), so logging to both would double each line."""
    try:
        out = os.fstat(sys.stdout.fileno())
        target = os.stat(path)
    except (OSError, ValueError, AttributeError):  # no real stdout (e.g. captured), or no file yet
        return False
    return (out.st_dev, out.st_ino) == (target.st_dev, target.st_ino)
