"""Helpers of the lifecycle-edge tests (issue 11): refusals and the runs a state directory holds."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from .cli import spotrain


def refused(out: subprocess.CompletedProcess, *phrases: str) -> None:
    """Exit 2, every phrase in the message, a hint, and no traceback."""
    assert out.returncode == 2, f"rc {out.returncode}\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}"
    assert "Traceback" not in out.stderr, out.stderr
    assert out.stderr.startswith("error: ") and "\nhint: " in out.stderr, out.stderr
    for phrase in phrases:
        assert phrase in out.stderr, f"{phrase!r} not in {out.stderr!r}"


def runs(home: Path) -> list[dict]:
    out = spotrain("status", "--json", home=home)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def bill(home: Path, run_id: str) -> dict:
    out = spotrain("cost", run_id, "--json", home=home)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)
