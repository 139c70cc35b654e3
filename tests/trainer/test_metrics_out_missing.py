"""--tensorboard or --wandb where the package is not installed: bad input (exit 2) naming the pip
command, before any training step. The packages are hidden by a module on PYTHONPATH that fails to
import, as a missing one does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("flag", "package"), [(["--tensorboard"], "tensorboard"), (["--wandb", "p"], "wandb")]
)
def test_a_missing_package_is_bad_input_before_any_step(tmp_path, flag, package) -> None:
    fake = tmp_path / "site" / package
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        f"raise ModuleNotFoundError(\"No module named '{package}'\", name='{package}')\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{fake.parent}{os.pathsep}{REPO}", "OMP_NUM_THREADS": "1"}
    run_dir = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "trainer.train", "--recipe", "digits", "--run-dir", str(run_dir), *flag],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    assert f"pip install {package}" in done.stderr and "Traceback" not in done.stderr
    kinds = [json.loads(line)["kind"] for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert "step" not in kinds and kinds[-1] == "error"
