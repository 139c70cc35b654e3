"""The spotrain CLI run as a user runs it: a subprocess of this checkout, in its own SPOTRAIN_HOME."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# `make demo`: digits on the dry-run, interrupted mid-epoch 2 at step 30 (the only eval before it, at
# step 22, is near 76%, far from the 98% target on any machine), resumed by itself.
DEMO = (
    "launch",
    "--dry-run",
    "--recipe",
    "digits",
    "--inject-interruption",
    "step:30",
    "--auto-resume",
    "-y",
    "--boot-delay",
    "0.5",
)


def spotrain(
    *args: str,
    home: Path,
    env: Mapping[str, str] | None = None,
    prefix: Sequence[str] = (),
    timeout: float = 240,
    cwd: Path = REPO,
) -> subprocess.CompletedProcess:
    """`spotrain ARGS` with SPOTRAIN_HOME=home, run from `cwd`; `env` adds variables, `prefix` wraps the
    command."""
    full = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "SPOTRAIN_HOME": str(home)}
    full.pop("SPOTRAIN_CRASH_AT", None)  # only the test that kills the controller sets it
    full.update(env or {})
    return subprocess.run(
        [*prefix, sys.executable, "-m", "spotrain.cli", *args],
        cwd=cwd,
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
