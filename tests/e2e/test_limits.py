"""--max-attempts and --budget through the CLI on the dry-run: a run past either limit ends FAILED,
says which limit and why, and leaves no instance of the run behind."""

from __future__ import annotations

import json
from pathlib import Path

from spotrain.cloud.local.imds import trainer_pids
from spotrain.store import Store

from .cli import spotrain

DIGITS = ("launch", "--dry-run", "--recipe", "digits", "-y", "--boot-delay", "0.5")


def only_run(home: Path) -> dict:
    rows = json.loads(spotrain("status", "--json", home=home).stdout)
    assert len(rows) == 1, rows
    return rows[0]


def assert_nothing_left(home: Path, run_id: str) -> None:
    """Every dry-run instance of the run is terminated, no trainer runs, and `down` has nothing to end."""
    records = [json.loads(p.read_text()) for p in (home / "dry-run" / "instances").glob("i-*.json")]
    mine = [r for r in records if r["tags"].get("spotrain:run") == run_id]
    assert mine and all(r["state"] == "terminated" for r in mine), mine
    assert trainer_pids(home / "dry-run" / "instances") == []
    down = spotrain("down", run_id, "-y", home=home)
    assert down.returncode == 0, down.stderr
    assert "i-" not in down.stdout, down.stdout  # no instance was left for `down` to terminate


def test_max_attempts_one_ends_failed_after_the_interruption(tmp_path: Path) -> None:
    out = spotrain(
        *DIGITS, "--inject-interruption", "step:30", "--auto-resume", "--max-attempts", "1", home=tmp_path
    )
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-3000:]  # the run failed
    row = only_run(tmp_path)
    assert row["state"] == "failed" and row["attempts"] == 1
    assert "FAILED: not resumed: --max-attempts: 1 attempt made of at most 1" in out.stdout
    with Store.open(tmp_path / "dry-run") as store:
        (attempt,) = store.attempts(row["run"])
        assert attempt.end_reason == "spot-interruption" and attempt.ended_at is not None
        assert store.get_run(row["run"]).end_reason.startswith("not resumed: --max-attempts")
    assert_nothing_left(tmp_path, row["run"])


def test_without_auto_resume_the_limit_ends_the_run_and_resume_says_why(tmp_path: Path) -> None:
    out = spotrain(*DIGITS, "--inject-interruption", "step:30", "--max-attempts", "1", home=tmp_path)
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-3000:]  # the run failed
    row = only_run(tmp_path)
    assert row["state"] == "failed" and row["attempts"] == 1
    refused = spotrain("resume", row["run"], home=tmp_path)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "has already ended (failed: not resumed: --max-attempts: 1 attempt made" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert_nothing_left(tmp_path, row["run"])


def test_budget_stops_training_terminates_and_says_so(tmp_path: Path) -> None:
    """$0.001 is less than the first attempt's billed minute (~$0.003): stopped at its first steps."""
    out = spotrain(*DIGITS, "--budget", "0.001", home=tmp_path)
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-3000:]  # the run failed
    row = only_run(tmp_path)
    assert row["state"] == "failed" and row["attempts"] == 1
    assert "BUDGET: spent $" in out.stdout and "would pass the budget of $0.0010" in out.stdout
    with Store.open(tmp_path / "dry-run") as store:
        run = store.get_run(row["run"])
        (attempt,) = store.attempts(row["run"])
        (event,) = store.events(row["run"], kinds=["budget"])
        done = store.events(row["run"], kinds=["done"])
    assert run.end_reason.startswith("stopped: --budget: spent $")
    assert f"{attempt.instance_id} is terminated" in run.end_reason
    assert event.data["spent"] + event.data["projected"] > 0.001 and event.attempt == 1
    assert attempt.end_reason == "budget" and attempt.exit_code == 75 and not done
    assert_nothing_left(tmp_path, row["run"])


def test_budget_refuses_another_attempt_that_would_pass_it(tmp_path: Path) -> None:
    """One attempt (~$0.003) fits $0.004; a second one's billed minute would not: no relaunch. The
    interrupted instance is terminated at once (so billed; left to EC2 its first hour would be free)."""
    budget = "0.004"
    out = spotrain(
        *DIGITS,
        *("--budget", budget, "--inject-interruption", "step:30", "--auto-resume", "--terminate-on-notice"),
        home=tmp_path,
    )
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-3000:]  # the run failed
    row = only_run(tmp_path)
    assert row["state"] == "failed" and row["attempts"] == 1
    assert "launching no other instance" in out.stdout
    with Store.open(tmp_path / "dry-run") as store:
        (attempt,) = store.attempts(row["run"])
        (event,) = store.events(row["run"], kinds=["budget"])
        reason = store.get_run(row["run"]).end_reason
    assert attempt.end_reason == "spot-interruption" and event.attempt is None
    assert reason.startswith("not resumed: --budget: spent $") and f"${float(budget):.4f}" in reason
    assert_nothing_left(tmp_path, row["run"])
