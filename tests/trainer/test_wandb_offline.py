"""--wandb PROJECT with WANDB_MODE=offline (no network): two attempts of digits in one run directory,
the first stopped by an injected notice at step 10 (exit 75), the second resumed; each attempt's offline
run holds the run directory's name as W&B's run id, and their histories make one curve of steps."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUN_ID = "digits-20261204-0000-abcd"  # a spotrain run id: the run dir's name


def _train(run_dir: Path, *extra: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    args = ["--recipe", "digits", "--run-dir", str(run_dir), "--wandb", "spotrain-test", "--max-steps", "20"]
    full = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", **env}
    full.pop("WANDB_API_KEY", None)
    return subprocess.run(
        [sys.executable, "-m", "trainer.train", *args, *extra],
        cwd=REPO,
        env=full,
        capture_output=True,
        text=True,
        timeout=180,
    )


def _records(path: Path):
    """The records of a .wandb file: W&B's header (':W&B', 2-byte key, version), then LevelDB's log
    format (32 KiB blocks; a record is crc32, 2-byte length, type FULL/FIRST/MIDDLE/LAST, payload)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, block, pos, part = path.read_bytes(), 32768, 7, b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0:
            pos += block - pos % block
            continue
        part, pos = part + data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind in (1, 4):  # FULL or LAST: a whole record
            record = pb.Record()
            record.ParseFromString(part)
            part = b""
            yield record


def _history(path: Path) -> tuple[set[str], list[int], dict[int, float]]:
    ids, steps, top1 = set(), [], {}
    for r in _records(path):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            ids.add(r.run.run_id)
        elif kind == "history":
            # a key with "/" may come as nested_key parts
            items = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
            steps.append(r.history.step.num)
            if "eval/top1" in items:
                top1[r.history.step.num] = items["eval/top1"]
    return ids, steps, top1


def test_two_attempts_log_one_wandb_run_with_the_spotrain_run_id(tmp_path) -> None:
    pytest.importorskip("wandb")
    run_dir = tmp_path / RUN_ID
    first = _train(run_dir, env={"SPOTRAIN_NOTICE_AT": "step:10", "SPOTRAIN_ATTEMPT": "1"})
    assert first.returncode == 75, first.stderr[-3000:]
    second = _train(run_dir, "--resume", "auto", env={"SPOTRAIN_ATTEMPT": "2"})
    assert second.returncode == 0, second.stderr[-3000:]
    runs = sorted((run_dir / "wandb").glob(f"offline-run-*-{RUN_ID}/run-{RUN_ID}.wandb"))
    assert len(runs) == 2, list((run_dir / "wandb").iterdir())
    (ids1, steps1, _), (ids2, steps2, top1) = (_history(p) for p in runs)
    assert ids1 == ids2 == {RUN_ID}
    log_every = 5  # digits' recipe
    assert steps1 == [log_every, 2 * log_every]  # up to the notice at step 10
    assert steps2[0] > steps1[-1] and steps2 == sorted(steps2)  # the curve goes on after the resume
    assert list(top1) == [20] and 0 < top1[20] <= 1  # --max-steps 20 ends with an eval
