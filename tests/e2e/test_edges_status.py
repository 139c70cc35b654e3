"""Watching a run at its edges (issue 11, item 10): `status` of a run nobody watches, `logs -f` across
attempts, run ids by prefix, an attempt's last step, and the log of an attempt whose controller died."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spotrain.store import RunState, Store

from . import cli
from .edges import bill, refused


def only_run(home: Path):
    with Store.open(home / "dry-run") as store:
        (run,) = store.list_runs()
        return run, store.attempts(run.run_id)


def instance_run_dir(home: Path, instance_id: str, run_id: str) -> Path:
    return home / "dry-run" / "instances" / instance_id / "spotrain" / "runs" / run_id


def wait_for_exit(run_dir: Path, timeout_s: float = 90) -> int:
    """The trainer's exit code, once its supervisor on the instance has written it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            return int((run_dir / "exit_code").read_text())
        except (OSError, ValueError):
            time.sleep(0.05)
    raise AssertionError(f"the trainer in {run_dir} did not exit within {timeout_s} s")


def killed_in_training(home: Path):
    """The demo's launch killed (as by SIGKILL) just after it stored the trainer's first event; the
    trainer goes on alone on its instance to the injected notice at step 30 and exits 75."""
    killed = cli.spotrain(*cli.DEMO, home=home, env={"SPOTRAIN_CRASH_AT": "training"})
    assert killed.returncode == -9, killed.stdout[-2000:] + killed.stderr[-2000:]
    run, (attempt,) = only_run(home)
    run_dir = instance_run_dir(home, attempt.instance_id, run.run_id)
    assert wait_for_exit(run_dir) == 75
    return run, attempt, run_dir


def test_status_of_an_unwatched_run_refreshes_from_its_instance(tmp_path: Path) -> None:
    from spotrain.layout import run_lock

    home = tmp_path / "home"
    run, attempt, _ = killed_in_training(home)
    assert attempt.last_step is None  # the dead controller stored only the trainer's start

    with run_lock(home / "dry-run", run.run_id):  # a controller watching: it pulls, status only reads
        out = cli.spotrain("status", run.run_id, "--json", home=home)
    assert out.returncode == 0, out.stderr
    (row,) = json.loads(out.stdout)
    assert row["step"] is None and row["epoch"] is None and not row["trainer"], row

    out = cli.spotrain("status", run.run_id, "--json", home=home)  # nobody watching: status pulls
    assert out.returncode == 0, out.stderr
    (row,) = json.loads(out.stdout)
    assert row["state"] == RunState.TRAINING.value  # status reads, it never takes the run over
    assert row["step"] == 30 and row["epoch"] is not None and row["epoch"] > 0.1, row
    assert "trainer exited 75" in row["trainer"] and f"spotrain resume {run.run_id}" in row["trainer"]
    _, (again,) = only_run(home)
    assert again.ended_at is None and again.last_step == 30  # the events are stored, the attempt lives

    table = cli.spotrain("status", run.run_id, home=home)
    assert table.returncode == 0 and "trainer exited 75" in table.stdout, table.stdout


def test_an_attempts_last_step_is_where_its_trainer_saved_and_stopped(tmp_path: Path) -> None:
    """`step` events come every --log-every steps (35 here); the checkpoint and interruption at 37 are
    the attempt's last step, the step the next attempt resumes from (item d)."""
    from spotrain.orchestrator import Orchestrator

    with Store.open(tmp_path) as store:
        store.create_run("r-1", {"recipe": "digits"}, dry_run=True)
        store.add_attempt(
            "r-1",
            instance_id="i-1",
            region="us-east-1",
            zone="us-east-1a",
            instance_type="c5.large",
            spot_usd_per_hour=0.1,
            requested_at=1.0,
        )
        orch, run = Orchestrator(store, None, tmp_path), store.get_run("r-1")
        attempt = store.live_attempt("r-1")
        for event in (
            {"kind": "start", "t": 2.0, "step": 0},
            {"kind": "step", "t": 3.0, "step": 35, "epoch": 0.2},
            {"kind": "checkpoint", "t": 4.0, "step": 20, "where": "s3"},  # an older one, uploaded late
            {"kind": "checkpoint", "t": 5.0, "step": 37, "where": "local"},
            {"kind": "interruption", "t": 6.0, "step": 37, "source": "imds"},
        ):
            attempt = orch._note_progress(run, attempt, event)
        assert store.live_attempt("r-1").last_step == 37


REAL, DRY, OTHER = "digits-20260101-0000-aaaa", "digits-20260101-0000-aabb", "cifar10-20260102-0000-cccc"


def two_stores(home: Path, real: bool = True) -> None:
    """Runs in the real store (unless not `real`) and in the dry-run's, none launched."""
    if real:
        with Store.open(home) as store:
            store.create_run(REAL, {"recipe": "digits"}, dry_run=False)
    with Store.open(home / "dry-run") as store:
        store.create_run(DRY, {"recipe": "digits"}, dry_run=True)
        store.create_run(OTHER, {"recipe": "cifar10"}, dry_run=True)


def test_a_unique_prefix_names_a_run_in_either_store(tmp_path: Path) -> None:
    home = tmp_path / "home"
    two_stores(home)
    for prefix, full in (
        ("digits-20260101-0000-aaa", REAL),
        ("digits-20260101-0000-aab", DRY),
        ("cif", OTHER),
    ):
        out = cli.spotrain("status", prefix, "--json", home=home)
        assert out.returncode == 0, out.stderr
        assert [r["run"] for r in json.loads(out.stdout)] == [full]
    assert bill(home, "cif")["run"] == OTHER  # every command that names a run takes a prefix
    out = cli.spotrain("logs", "cif", home=home)
    refused(out, f"run {OTHER} has no attempt yet")
    out = cli.spotrain("down", "cif", "-y", home=home)
    assert out.returncode == 0 and f"run {OTHER}: cancelled" in out.stdout, out.stdout + out.stderr


def test_an_ambiguous_prefix_is_refused_with_its_matches(tmp_path: Path) -> None:
    home = tmp_path / "home"
    two_stores(home)
    out = cli.spotrain("status", "digits-2026", home=home)
    refused(out, "'digits-2026' is ambiguous", REAL, DRY)
    assert OTHER not in out.stderr


def test_an_unknown_run_lists_the_known_ones_of_both_stores(tmp_path: Path) -> None:
    home = tmp_path / "home"
    two_stores(home, real=False)  # only dry-run runs: the real store is empty (or absent)
    out = cli.spotrain("status", "nope", home=home)
    refused(out, "run 'nope' is unknown", DRY, OTHER)
    assert "there are no runs" not in out.stderr
    out = cli.spotrain("cost", "digits-20260101-0000-aabc", home=home)
    refused(out, "did you mean " + DRY)


@pytest.fixture(scope="module")
def followed_demo(tmp_path_factory) -> tuple[Path, str, subprocess.CompletedProcess]:
    """The demo (interrupted at step 30, resumed by itself) with `logs RUN --attempt 1 -f` started
    while its first attempt lives; shared by the tests of what it left."""
    home = tmp_path_factory.mktemp("followed") / "home"
    env = {**os.environ, "PYTHONPATH": str(cli.REPO), "OMP_NUM_THREADS": "1", "SPOTRAIN_HOME": str(home)}
    env.pop("SPOTRAIN_CRASH_AT", None)
    launch = subprocess.Popen(
        [sys.executable, "-m", "spotrain.cli", *cli.DEMO],
        cwd=cli.REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if (home / "dry-run" / "state.db").exists():
                with Store.open(home / "dry-run") as store:
                    runs = store.list_runs()
                    if runs and store.attempts(runs[0].run_id):
                        break
            assert launch.poll() is None, launch.stdout.read()
            time.sleep(0.05)
        else:
            raise AssertionError("the demo made no attempt within 90 s")
        logs = cli.spotrain("logs", runs[0].run_id, "--attempt", "1", "-f", home=home, timeout=180)
        assert launch.wait(timeout=180) == 0, launch.stdout.read()
    finally:
        if launch.poll() is None:
            launch.kill()
    return home, runs[0].run_id, logs


def test_logs_follow_goes_on_across_attempts_until_the_run_ends(followed_demo) -> None:
    home, run_id, logs = followed_demo
    assert logs.returncode == 0, logs.stderr
    _, attempts = only_run(home)
    assert len(attempts) == 2
    lines = logs.stdout.splitlines()
    separator = f"==> attempt 2 of run {run_id} ({attempts[1].instance_id}) <=="
    assert separator in lines, logs.stdout[-3000:]
    cut = lines.index(separator)
    kept = [
        (home / "dry-run" / "logs" / run_id / f"attempt-{n}.log").read_text().splitlines() for n in (1, 2)
    ]
    assert lines[:cut] == kept[0] and lines[cut + 1 :] == kept[1]  # each line once, in order
    assert kept[1], "attempt 2 wrote no log"


def test_logs_of_an_attempt_whose_controller_died_reads_the_instance(tmp_path: Path) -> None:
    """The controller died while attempt 1 trained, with no one to keep its log: `logs`, a fresh
    process, reaches the instance as AWS says to (its address, its key pair's key in the state
    directory) and reads it there. After `down` the instance is gone, as on EC2: the log is then the
    run's S3 prefix's (the mirror's upload at the checkpoint, if it beat the kill), else `logs` says it is lost."""
    home = tmp_path / "home"
    run, attempt, run_dir = killed_in_training(home)
    out = cli.spotrain("logs", run.run_id, home=home)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == (run_dir / "train.log").read_text().splitlines()
    assert "checkpoint at step 30" in out.stdout
    down = cli.spotrain("down", run.run_id, "-y", home=home)
    assert down.returncode == 0, down.stderr
    gone = cli.spotrain("logs", run.run_id, home=home)
    # Whether the mirror's upload of the logs at the step-30 checkpoint reached the dry-run's S3 before
    # the controller (and its moto server) died is a race: the S3 copy decides which answer is right.
    mirrored = (
        home / "dry-run" / "s3" / "spotrain-dry-run" / "runs" / run.run_id / "attempts" / "1" / "train.log"
    )
    if mirrored.exists():
        assert gone.returncode == 0, gone.stderr
        assert gone.stdout.splitlines() == mirrored.read_text().splitlines()  # S3's copy, not the disk's
    else:
        assert gone.returncode == 2 and "was not kept" in gone.stderr and "S3 prefix" in gone.stderr, (
            gone.stderr
        )
