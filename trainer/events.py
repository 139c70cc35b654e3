"""The run's event log: one JSON object a line in events.jsonl, appended and flushed, never rewritten.

The controller parses nothing else of the trainer's output, so every fact it needs (config, progress,
accuracy, checkpoints, interruptions) is an event. Only rank 0 writes; other ranks get a disabled log.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

KINDS = (
    "start",
    "step",
    "epoch",
    "eval",
    "checkpoint",
    "rebalance",
    "interruption",
    "done",
    "error",
    "warning",
)


class EventLog:
    """Appends events to `path` (thread-safe: the checkpoint writer logs from its own thread)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._file = open(path, "a", encoding="utf-8") if path is not None else None  # noqa: SIM115

    def write(self, kind: str, **fields: Any) -> dict[str, Any]:
        if kind not in KINDS:
            raise ValueError(f"unknown event kind {kind!r}")
        event = {"t": round(time.time(), 3), "kind": kind, **fields}
        if self._file is not None:
            line = json.dumps(event, separators=(",", ":"), default=str) + "\n"
            with self._lock:
                self._file.write(line)
                self._file.flush()
        return event

    def sync(self) -> None:
        """Make what was written durable (fsync): before exiting, and before an upload of the log."""
        if self._file is not None:
            with self._lock:
                self._file.flush()
                os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self.sync()
            self._file.close()
            self._file = None


def read_events(path: Path) -> list[dict[str, Any]]:
    """Every complete event in an events.jsonl (a torn last line, from a crash, is skipped)."""
    events = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events


def write_status(path: Path, status: dict[str, Any]) -> None:
    """status.json, replaced atomically so a reader never sees half of it."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"updated": round(time.time(), 3), **status}, indent=1), encoding="utf-8")
    os.replace(tmp, path)
