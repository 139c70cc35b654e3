"""The help reads as documentation (an example on every page) and the CLI starts light: importing
`spotrain.cli` pulls in none of the heavy libraries, which each command imports when it runs.

Start-up time is measured and printed (`pytest -s`), not asserted: it depends on the machine's load."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from spotrain.cli import cli

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("boto3", "botocore", "rich", "pydantic", "torch", "yaml", "paramiko", "moto", "matplotlib")
COMMANDS = sorted(cli.commands)


def run_python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_every_help_page_has_an_example(command: str | None) -> None:
    args = [command, "--help"] if command else ["--help"]
    out = CliRunner().invoke(cli, args)
    assert out.exit_code == 0, out.output
    assert "Example" in out.output, f"`spotrain {' '.join(args)}` shows no example:\n{out.output}"
    example = out.output.split("Example", 1)[1]
    assert f"spotrain {command or ''}".strip() in example  # the example runs this very command


def test_importing_the_cli_imports_nothing_heavy() -> None:
    out = run_python(f"import sys, spotrain.cli\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"imported at start: {out.stdout.strip()}"


@pytest.mark.parametrize("flag", ["--version", "--help"])
def test_start_up_time_is_measured(flag: str) -> None:
    """Median of 5 fresh interpreters running `spotrain FLAG` (the goal is under 0.3 s)."""
    times = []
    for _ in range(5):
        start = time.perf_counter()
        out = run_python(f"from spotrain.cli import main; main([{flag!r}])")
        times.append(time.perf_counter() - start)
        assert out.returncode == 0, out.stderr
    print(
        f"\nspotrain {flag}: median {statistics.median(times):.3f} s, min {min(times):.3f} s (goal < 0.3 s)"
    )
