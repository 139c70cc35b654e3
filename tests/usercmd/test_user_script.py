"""Issue 17's "your own command", end to end: a plain PyTorch script (tests/usercmd/project/train.py:
torch only, no spotrain import) launched as a user launches it, `spotrain launch --dry-run
--inject-interruption step:20 --auto-resume -y -- python train.py` from its own directory; interrupted
once at its step 20, resumed at the step it saved itself, finished; its metrics in `status --json` and
in the report's data (`compare --json`, the report's summary)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from tests.e2e.cli import spotrain

PROJECT = Path(__file__).parent / "project"


@pytest.fixture(scope="module")
def launched(tmp_path_factory) -> tuple[Path, str, Path]:
    """(SPOTRAIN_HOME, the run's id, the user's project directory) after one launch."""
    home, proj = tmp_path_factory.mktemp("home"), tmp_path_factory.mktemp("proj")
    shutil.copy(PROJECT / "train.py", proj / "train.py")
    (proj / ".gitignore").write_text("data/\n*.log\n", encoding="utf-8")  # a user's usual ignores
    (proj / "data").mkdir()
    (proj / "data" / "big.bin").write_bytes(b"\0" * 4096)
    (proj / "notes.log").write_text("not for the instance\n", encoding="utf-8")
    args = ("launch", "--dry-run", "--inject-interruption", "step:20", "--auto-resume", "-y")
    out = spotrain(*args, "--boot-delay", "0.5", "--", "python", "train.py", home=home, cwd=proj)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    run_id = re.search(r"^run (command-\S+)$", out.stdout, re.M).group(1)
    return home, run_id, proj


def _log(home: Path, run_id: str, attempt: int) -> str:
    return (home / "dry-run" / "logs" / run_id / f"attempt-{attempt}.log").read_text(encoding="utf-8")


def _saved_and_resumed(home: Path, run_id: str) -> tuple[int, int, int]:
    """(the step the script said it saved in attempt 1, the step it said it resumed from in attempt 2,
    the first step it reported in attempt 2), from its own output kept as each attempt's log."""
    saved = int(re.search(r"^saved step (\d+)$", _log(home, run_id, 1), re.M).group(1))
    second = _log(home, run_id, 2)
    resumed = int(re.search(r"^resumed from step (\d+)$", second, re.M).group(1))
    first = next(json.loads(ln)["step"] for ln in second.splitlines() if ln.startswith('{"step"'))
    return saved, resumed, first


def test_the_script_is_interrupted_once_resumed_at_its_own_step_and_finishes(launched) -> None:
    home, run_id, _ = launched
    saved, resumed, first = _saved_and_resumed(home, run_id)
    # SIGTERM came at or after its step 20 (when the supervisor read that line), long before its 80
    assert 20 <= saved < 80
    assert resumed == saved and first == saved + 1
    assert "done" in _log(home, run_id, 2).splitlines()
    summary = json.loads(spotrain("compare", "--json", run_id, home=home).stdout)[0]
    assert (summary["state"], summary["n_attempts"], summary["interruptions"]) == ("succeeded", 2, 1)
    one, two = summary["attempts"]
    assert (one["end_reason"], two["end_reason"]) == ("spot-interruption", "finished")
    assert two["resumed_from_step"] == saved  # the snapshot S3 held was the one saved at that step


def test_its_metric_lines_are_in_status_and_the_report(launched) -> None:
    home, run_id, proj = launched
    printed = [
        json.loads(ln)["top1"]
        for n in (1, 2)
        for ln in _log(home, run_id, n).splitlines()
        if ln.startswith("{") and "top1" in ln
    ]
    assert len(printed) == 4  # steps 20 (attempt 1), 40, 60 and 80 (attempt 2)
    status = spotrain("status", "--json", home=home, cwd=proj)
    assert status.returncode == 0, status.stderr
    row = next(r for r in json.loads(status.stdout) if r["run"] == run_id)
    assert (row["state"], row["recipe"], row["step"], row["best_top1"]) == (
        "succeeded",
        "command",
        80,
        max(printed),
    )
    summary = json.loads(spotrain("compare", "--json", run_id, home=home).stdout)[0]
    assert summary["best_top1"] == max(printed)
    assert summary["last_eval"] == {"step": 80, "top1": printed[-1]}
    assert summary["target"] is None and summary["to_target"] is None  # no target: none invented
    report = spotrain("report", run_id, home=home)
    assert report.returncode == 0, report.stderr
    page = (home / "dry-run" / "reports" / run_id / "report.html").read_text(encoding="utf-8")
    assert f"{max(printed):.4f}" in page


def test_what_gitignore_names_stays_on_the_laptop(launched) -> None:
    home, _, _ = launched
    workdirs = sorted((home / "dry-run" / "instances").glob("*/spotrain/bundle/workdir"))
    assert len(workdirs) == 2
    for workdir in workdirs:
        assert sorted(p.name for p in workdir.iterdir()) == [".gitignore", "train.py"]
