"""One cloud class, two worlds: the dry-run demo drives `AwsCloud` itself (on moto, with the dry-run's
Machines), so the code a real launch runs is the code the demo runs. Measured with coverage over the
demo as a user runs it, in a fresh process (the module's own lines are imported under the tracer)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from .cli import DEMO, REPO

CLOUD = REPO / "spotrain" / "cloud" / "aws" / "cloud.py"
LOCAL = REPO / "spotrain" / "cloud" / "local"


def test_the_demo_runs_at_least_90_percent_of_the_real_cloud_class(tmp_path: Path) -> None:
    data, report = tmp_path / "coverage.db", tmp_path / "coverage.json"
    env = {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "SPOTRAIN_HOME": str(tmp_path / "home")}
    run = subprocess.run(
        [sys.executable, "-m", "coverage", "run", f"--data-file={data}", f"--include={CLOUD}"]
        + ["-m", "spotrain.cli", *DEMO],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "SUCCEEDED" in run.stdout and "INTERRUPTED" in run.stdout  # the demo as `make demo` runs it
    subprocess.run(
        [sys.executable, "-m", "coverage", "json", f"--data-file={data}", "-o", str(report)],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    (summary,) = json.loads(report.read_text())["files"].values()
    share = summary["summary"]["percent_covered"]
    assert share >= 90, f"{share:.1f}% of {CLOUD.name}; missed lines {summary['missing_lines']}"


def test_the_dry_run_keeps_no_second_copy_of_the_cloud() -> None:
    """Every verb of the Cloud protocol is AwsCloud's: cloud/local/ defines none of them again."""
    from spotrain.cloud.aws.cloud import AwsCloud
    from spotrain.cloud.local import LocalCloud

    verbs = [
        name for name in vars(AwsCloud) if not name.startswith("_") and callable(getattr(AwsCloud, name))
    ]
    redefined = [name for name in verbs if name in vars(LocalCloud) and name != "close"]
    assert not redefined, f"LocalCloud defines again: {redefined}"
    assert issubclass(LocalCloud, AwsCloud)
