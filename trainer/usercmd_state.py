"""A user command's state as spotrain keeps it: its checkpoint directory snapshotted into the trainer's
checkpoint layout (so `mirror.py` uploads it and `restore` finds it exactly as it does the bundled
trainer's), and its JSON metric lines turned into `step` and `eval` events.

A snapshot is `ckpt/step-000123/` holding `files.tar` (the whole checkpoint directory, subdirectories
included) and `manifest.json` (its sha256), written under a temporary name and renamed, `ckpt/LATEST`
last: a torn snapshot is never restored, the one before it is. The step in its name is the last step
the command reported in a metric line (a command that reports none gets 1, 2, 3...).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tarfile
import time
from pathlib import Path
from typing import Any

from trainer.checkpoint import LATEST, MANIFEST, candidates, sha256_file, step_dir_name, step_of, verify
from trainer.events import EventLog

ARCHIVE = "files.tar"
EVAL_KEYS = ("top1", "top5")  # a metric line holding one of these is an evaluation
KEEP = 3


def fingerprint(directory: Path) -> tuple:
    """What changes when any file under `directory` is written, renamed or removed (no file is read)."""
    if not directory.is_dir():
        return ()
    out = []
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            st = path.stat()
            out.append((str(path.relative_to(directory)), st.st_size, st.st_mtime_ns))
    return tuple(out)


def snapshot(source: Path, ckpt_root: Path, step: int, events: EventLog) -> Path | None:
    """`source` as a complete checkpoint `ckpt_root/step-N/` (LATEST written last), older ones pruned to
    KEEP; None (and nothing written) when `source` holds no file."""
    if not fingerprint(source):
        return None
    t0 = time.perf_counter()
    ckpt_root.mkdir(parents=True, exist_ok=True)
    final = ckpt_root / step_dir_name(step)
    tmp = ckpt_root / f".{final.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    with tarfile.open(tmp / ARCHIVE, "w") as tar:
        tar.add(source, arcname=".")
    size = (tmp / ARCHIVE).stat().st_size
    manifest = {
        "step": step,
        "created": time.time(),
        "files": {ARCHIVE: {"sha256": sha256_file(tmp / ARCHIVE), "bytes": size}},
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    latest_tmp = ckpt_root / f".{LATEST}.tmp"
    latest_tmp.write_text(final.name + "\n", encoding="utf-8")
    os.replace(latest_tmp, ckpt_root / LATEST)
    names = sorted((p.name for p in ckpt_root.iterdir() if step_of(p.name) is not None), key=step_of)
    for old in names[:-KEEP]:
        shutil.rmtree(ckpt_root / old, ignore_errors=True)
    blocked = time.perf_counter() - t0
    events.write("checkpoint", step=step, bytes=size, blocked_s=round(blocked, 3), where="local")
    return final


def newest_local(ckpt_root: Path, events: EventLog) -> Path | None:
    """The newest intact snapshot under `ckpt_root` (LATEST's first), or None."""
    if not ckpt_root.is_dir():
        return None
    for name in candidates(ckpt_root, events=events):
        if verify(ckpt_root / name) is None:
            return ckpt_root / name
    return None


def unpack(snapshot_dir: Path, target: Path) -> None:
    """The snapshot's files as the checkpoint directory `target` (what was there before is replaced)."""
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    with tarfile.open(snapshot_dir / ARCHIVE) as tar:
        tar.extractall(target, filter="data")  # no absolute paths, no `..`, no devices (PEP 706)


def metric_events(line: str) -> list[tuple[str, dict[str, Any]]]:
    """The event one line of the command's stdout stands for: a JSON object with top1 or top5 is an
    `eval` (with its step and epoch), else one with a whole `step` is a `step` event (its numbers: loss,
    lr...). Anything else (plain text, JSON without a step or a score) is only log."""
    text = line.strip()
    if not text.startswith("{"):
        return []
    try:
        data = json.loads(text)
    except ValueError:
        return []
    if not isinstance(data, dict):
        return []
    numbers = {k: v for k, v in data.items() if isinstance(k, str) and k not in ("t", "kind") and _finite(v)}
    step = numbers.get("step")  # a whole number: 10.0 is not a step
    scores = {k: numbers[k] for k in EVAL_KEYS if k in numbers}
    if scores:
        return [("eval", {**scores, **{k: numbers[k] for k in ("step", "epoch") if k in numbers}})]
    return [("step", numbers)] if isinstance(step, int) else []


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
