"""The habits of the ecosystem, through the console script as a user's shell runs it: click's shell
completion of run ids, recipes and instance types (the stores and the catalog only); NO_COLOR on a
real terminal (a pty), for rich's tables, spotrain's own error line and click's usage lines;
`prices --dry-run --json` with no AWS account at all; a run's commands and --region."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from spotrain.store import Store

REPO = Path(__file__).resolve().parents[1]
REAL, DRY = "digits-20260101-0000-aaaa", "digits-20260101-0000-bbbb"
ANSI = b"\x1b["


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A state directory with one real run (us-west-2) and one dry-run run (us-east-1)."""
    with Store.open(tmp_path) as store:
        store.create_run(REAL, {"recipe": "digits", "regions": ["us-west-2"]}, dry_run=False)
    with Store.open(tmp_path / "dry-run") as store:
        store.create_run(DRY, {"recipe": "digits", "dry_run": True}, dry_run=True)
    return tmp_path


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR" and not k.startswith("AWS_")}
    return {**env, "PYTHONPATH": str(REPO), "SPOTRAIN_HOME": str(home), "OMP_NUM_THREADS": "1", **extra}


def spotrain(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spotrain.cli", *args],
        env=_env(home, **env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def complete(home: Path, line: str) -> list[str]:
    """What bash's TAB offers after `line` (click's bash_complete protocol: `type,value` lines)."""
    words = line.split()
    cword = len(words) if line.endswith(" ") else len(words) - 1
    out = spotrain(home, COMP_WORDS=line, COMP_CWORD=str(cword), _SPOTRAIN_COMPLETE="bash_complete")
    assert out.returncode == 0, out.stderr
    return [row.split(",", 1)[1] for row in out.stdout.splitlines() if row]


def test_completion_offers_run_ids_recipes_and_instance_types(home: Path) -> None:
    assert complete(home, "spotrain logs dig") == [REAL, DRY]  # both stores, the real one first
    assert complete(home, f"spotrain compare {REAL} digits-20260101-0000-b") == [DRY]
    assert complete(home, "spotrain status x") == []
    assert complete(home, "spotrain launch --recipe ci") == ["cifar10", "cifar10_resnet9"]
    assert "p3.16xlarge" in complete(home, "spotrain prices --instance p3")
    assert all(t.startswith("g5") for t in complete(home, "spotrain launch --dry-run --instance g5"))
    script = spotrain(home, _SPOTRAIN_COMPLETE="bash_source")
    assert "complete -o nosort -F _spotrain_completion spotrain" in script.stdout, script.stdout


def on_a_terminal(home: Path, *args: str, **env: str) -> bytes:
    """What `spotrain ARGS` writes to a real terminal (stdout and stderr on one pty)."""
    parent, child = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "spotrain.cli", *args],
        stdin=child,
        stdout=child,
        stderr=child,
        env=_env(home, TERM="xterm-256color", **env),
    )
    os.close(child)
    chunks = []
    while True:
        try:
            data = os.read(parent, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=60)
    os.close(parent)
    return b"".join(chunks)


def test_no_color_writes_no_ansi_at_all(home: Path) -> None:
    # On a terminal without NO_COLOR there is colour and style: the control that the test can fail.
    assert ANSI in on_a_terminal(home, "status")  # rich's table title (italic)
    assert ANSI in on_a_terminal(home, "logs", "nope")  # spotrain's red error line
    for args in (("status",), ("logs", "nope"), ("launch", "--bogus")):
        out = on_a_terminal(home, *args, NO_COLOR="1")
        assert out.strip() and ANSI not in out, (
            f"spotrain {' '.join(args)} under NO_COLOR wrote {out[:300]!r}"
        )


def test_no_color_reaches_the_prices_table(home: Path) -> None:
    """`prices` draws its table in terminal.py: it gets the CLI's console, not one of its own."""
    out = on_a_terminal(home, "prices", "--instance", "p3.2xlarge", "--dry-run", NO_COLOR="1")
    assert "us-east-1" in out.decode() and ANSI not in out, out[:300]


def test_prices_dry_run_needs_no_account(home: Path) -> None:
    """No AWS variable at all, no ~/.aws: the dry-run's moto answers, in `cost --json`'s rules."""
    out = spotrain(
        home,
        "prices",
        "--instance",
        "p3.16xlarge",
        "--dry-run",
        "--json",
        "--region",
        "us-west-2",
        AWS_CONFIG_FILE=str(home / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(home / "none"),
    )
    assert out.returncode == 0, out.stderr
    table = json.loads(out.stdout)
    assert table["instance_type"] == "p3.16xlarge" and table["region"] == "us-west-2"
    zones = table["zones"]
    assert [z["zone"][:-1] for z in zones] == ["us-west-2"] * 3  # the dry-run's three zones there
    assert [z["usd_per_hour"] for z in zones] == sorted(z["usd_per_hour"] for z in zones)  # cheapest first
    for z in zones:
        assert z["low_24h_usd_per_hour"] <= z["usd_per_hour"] <= z["high_24h_usd_per_hour"]
        assert z["discount_fraction"] == pytest.approx(
            1 - z["usd_per_hour"] / table["on_demand_usd_per_hour"], abs=1e-5
        )


def test_a_runs_command_refuses_a_run_of_another_region(home: Path) -> None:
    refused = spotrain(home, "logs", REAL, "--region", "eu-west-1")
    assert refused.returncode == 2 and "us-west-2" in refused.stderr and "eu-west-1" in refused.stderr
    assert "Traceback" not in refused.stderr and "hint:" in refused.stderr
    listed = spotrain(home, "status", "--json", "--region", "us-west-2")
    assert listed.returncode == 0, listed.stderr
    assert [row["run"] for row in json.loads(listed.stdout)] == [REAL]  # not the dry-run's (us-east-1)
    bad = spotrain(home, "status", "--region", "mars-1")
    assert bad.returncode == 2 and "mars-1" in bad.stderr and "--region" in bad.stderr
