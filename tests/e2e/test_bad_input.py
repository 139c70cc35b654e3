"""Bad input through the CLI: each case is one clear message on stderr, exit 2, no traceback, and the
runs already in the state directory are still there, unchanged."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from spotrain.store import RunState, Store

from . import cli

SPEC = {"recipe": "digits", "instance": "g4dn.xlarge", "regions": ["us-east-1"], "dry_run": True}


def spotrain(*args: str, home: Path, as_nobody: bool = False) -> subprocess.CompletedProcess:
    # root writes anywhere: drop to nobody to meet the permissions
    prefix = (
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        if as_nobody and os.geteuid() == 0
        else []
    )
    return cli.spotrain(*args, home=home, env={"PYTHONDONTWRITEBYTECODE": "1"}, prefix=prefix, timeout=120)


def refused(out: subprocess.CompletedProcess, *phrases: str) -> None:
    """Exit 2, every phrase in the message, a hint, and no traceback."""
    assert out.returncode == 2, f"rc {out.returncode}\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}"
    assert "Traceback" not in out.stderr, out.stderr
    assert out.stderr.startswith("error: ") and "\nhint: " in out.stderr, out.stderr
    for phrase in phrases:
        assert phrase in out.stderr, f"{phrase!r} not in {out.stderr!r}"


def make_run(home: Path, run_id: str, state: RunState, *, attempt: bool = False) -> Path:
    """A run recorded in the dry-run's store (no instance, no process): only the store's word for it."""
    state_dir = home / "dry-run"
    with Store.open(state_dir) as store:
        store.create_run(run_id, SPEC, dry_run=True)
        if attempt:
            store.add_attempt(
                run_id,
                instance_id="i-0123456789abcdef0",
                region="us-east-1",
                zone="us-east-1a",
                instance_type="g4dn.xlarge",
                spot_usd_per_hour=0.16,
                requested_at=time.time() - 120,
            )
            store.update_attempt(run_id, 1, ended_at=time.time() - 60, end_reason="finished", exit_code=0)
        if state != RunState.REQUESTING:
            store.set_state(run_id, state, reason="the trainer finished" if attempt else "spotrain down")
    return state_dir / "state.db"


def runs_in(home: Path) -> list[tuple[str, str]]:
    with Store.open(home / "dry-run") as store:
        return [(r.run_id, r.state.value) for r in store.list_runs()]


# ------------------------------------------------------------------------------------------- run specs
@pytest.mark.parametrize(
    "yaml, phrases",
    [
        ("recipe: digits\nbudgett: 5\n", ["unknown key 'budgett'", "did you mean 'budget'?"]),
        ("recipe: digits\nmax_attempts: many\n", ["max_attempts: many is not allowed", "whole number"]),
        ("recipe: digits\nbudget: [1, 2]\n", ["budget", "positive number of dollars"]),
    ],
    ids=["unknown-key", "wrong-type", "list-for-number"],
)
def test_a_bad_spec_file_names_the_key_and_starts_nothing(tmp_path: Path, yaml: str, phrases: list) -> None:
    db = make_run(tmp_path, "digits-old-0001", RunState.SUCCEEDED, attempt=True)
    before = db.read_bytes()
    spec = tmp_path / "run.yaml"
    spec.write_text(yaml)
    refused(spotrain("launch", "-f", str(spec), "--dry-run", "-y", home=tmp_path), *phrases)
    assert db.read_bytes() == before  # no run was created, the old one is untouched
    assert not (tmp_path / "dry-run" / "instances").exists()


_BOMB = "recipe: digits\nincludes:\n  - &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"  - &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 9)
)  # 10^9 leaves once expanded: minutes, then MemoryError, if the loader followed the aliases
HURTFUL = [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xd8", ["{spec} is not UTF-8 text", "byte 0"]),
    (_BOMB.encode(), ["{spec}: line 4", "aliases"]),
    (b"recipe: digits\n" + b"#" * (1 << 20), ["{spec} is over 1 MB"]),
    (b"recipe: digits\nenv: {BIG: " + b"x" * 200_000 + b"}\n", ["env: ", "at most 64 KiB"]),
    (b"recipe: cifar10\n", ["recipe cifar10 needs data", "CIFAR-10 python batches"]),
]


@pytest.mark.parametrize(
    "content, phrases", HURTFUL, ids=["binary", "alias-bomb", "over-1mb", "env-200kb", "cifar10-no-data"]
)
def test_a_spec_file_that_would_hurt_is_refused_before_anything_starts(
    tmp_path: Path, content: bytes, phrases: list
) -> None:
    db = make_run(tmp_path, "digits-old-0001", RunState.SUCCEEDED, attempt=True)
    before = db.read_bytes()
    spec = tmp_path / "run.yaml"
    spec.write_bytes(content)
    out = spotrain("launch", "-f", str(spec), "--dry-run", "-y", home=tmp_path)
    refused(out, *(p.format(spec=spec) for p in phrases))
    assert db.read_bytes() == before  # no run was created, nothing was launched
    assert not (tmp_path / "dry-run" / "instances").exists()


def test_a_budget_of_inf_is_refused(tmp_path: Path) -> None:
    out = spotrain("launch", "--dry-run", "--recipe", "digits", "--budget", "inf", "-y", home=tmp_path)
    refused(out, "budget: inf is not allowed; expected a positive number of dollars", "command line")
    assert not (tmp_path / "dry-run" / "instances").exists()


# ------------------------------------------------------------------------------------------- commands
def test_resume_of_an_unknown_run_lists_the_known_ones(tmp_path: Path) -> None:
    make_run(tmp_path, "digits-old-0001", RunState.SUCCEEDED, attempt=True)
    refused(spotrain("resume", "digits-nope-9999", home=tmp_path), "digits-nope-9999")
    assert runs_in(tmp_path) == [("digits-old-0001", "succeeded")]


def test_resume_of_a_finished_run_says_it_ended(tmp_path: Path) -> None:
    db = make_run(tmp_path, "digits-old-0001", RunState.SUCCEEDED, attempt=True)
    before = db.read_bytes()
    refused(
        spotrain("resume", "digits-old-0001", home=tmp_path),
        "run digits-old-0001 has already ended (succeeded: the trainer finished)",
        "spotrain launch",
    )
    assert db.read_bytes() == before


def test_logs_of_a_run_with_no_attempt_yet(tmp_path: Path) -> None:
    make_run(tmp_path, "digits-new-0001", RunState.REQUESTING)
    refused(spotrain("logs", "digits-new-0001", home=tmp_path), "has no attempt yet", "spotrain status")
    assert runs_in(tmp_path) == [("digits-new-0001", "requesting")]


@pytest.mark.parametrize("number", ["0", "-1", "2"])
def test_logs_of_an_attempt_outside_the_run_s_names_the_range(tmp_path: Path, number: str) -> None:
    make_run(tmp_path, "digits-old-0001", RunState.SUCCEEDED, attempt=True)
    out = spotrain("logs", "digits-old-0001", "--attempt", number, home=tmp_path)
    refused(out, f"run digits-old-0001 has no attempt {number}; its attempts are 1 to 1", "--attempt")


def test_down_of_a_run_already_down(tmp_path: Path) -> None:
    make_run(tmp_path, "digits-old-0001", RunState.CANCELLED)
    refused(spotrain("down", "digits-old-0001", "-y", home=tmp_path), "already down", "cancelled")
    assert runs_in(tmp_path) == [("digits-old-0001", "cancelled")]


# ------------------------------------------------------------------------------------------- the state
@pytest.mark.skipif(os.geteuid() == 0 and not shutil.which("setpriv"), reason="root without setpriv")
@pytest.mark.parametrize("command", [["status"], ["launch", "--dry-run", "--recipe", "digits", "-y"]])
def test_a_read_only_state_directory_is_named_with_a_fix(command: list[str]) -> None:
    top = Path(tempfile.mkdtemp(prefix="spotrain-ro-"))  # not under pytest's 0700 root: nobody reads it
    home = top / "home"
    db = make_run(home, "digits-old-0001", RunState.SUCCEEDED, attempt=True)
    with Store.open(home):  # the real runs' store too, as a user who ran spotrain before would have
        pass
    before = db.read_bytes()
    paths = [top, *top.rglob("*")]
    for p in paths:
        p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        out = spotrain(*command, home=home, as_nobody=True)
    finally:
        for p in paths:
            p.chmod(0o700 if p.is_dir() else 0o600)
    try:
        refused(out, str(home), "SPOTRAIN_HOME")
        assert db.read_bytes() == before
    finally:
        shutil.rmtree(top)


def test_a_corrupted_state_database_is_refused_and_kept(tmp_path: Path) -> None:
    db = make_run(tmp_path, "digits-old-0001", RunState.SUCCEEDED, attempt=True)
    db.write_bytes(b"SQLite format 3\x00" + os.urandom(4096))
    broken = db.read_bytes()
    for command in (
        ["status"],
        ["cost", "digits-old-0001"],
        ["launch", "--dry-run", "--recipe", "digits", "-y"],
    ):
        refused(spotrain(*command, home=tmp_path), str(db), "move it aside")
        assert db.read_bytes() == broken  # never overwritten: the user may still recover it
