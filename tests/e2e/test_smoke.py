"""`spotrain smoke --dry-run` (issue 13's last Done-when line): the same steps as on AWS, the one
interruption sent through the FIS code on moto, every check passed and nothing of it left; and a
Ctrl-C mid-way ends with exit 130 after the cleanup, the run CANCELLED, every instance ended."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from spotrain.store import RunState, Store

from .cli import REPO, spotrain
from .edges import runs

SMOKE = ("smoke", "--dry-run", "-y")


def _records(home: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((home / "dry-run" / "instances").glob("*.json"))]


def test_the_dry_run_smoke_passes_every_check_and_leaves_nothing(tmp_path) -> None:
    out = spotrain(*SMOKE, "--json", home=tmp_path, timeout=300)  # the checks as JSON, the steps on stderr
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "by fis: sent by AWS Fault Injection Service" in out.stderr  # FIS's code path, not SIGTERM
    result = json.loads(out.stdout)
    passed = {c["name"]: c["ok"] for c in result["checks"]}
    for check in ("the trainer logged the interruption", "attempt 2 ran in another zone", "nothing is left"):
        assert passed[check], result
    assert result["ok"] and result["interruption"] == "fis", result
    assert re.search(r"cleanup removed: [0-9a-f]{32}", out.stderr), out.stderr  # the FIS template went
    records = _records(tmp_path)
    assert len(records) == 2 and {r["state"] for r in records} == {"terminated"}, records
    (run,) = runs(tmp_path)
    assert run["state"] == "succeeded", run


def _wait_training(home: Path, proc: subprocess.Popen, deadline_s: float = 240) -> str:
    deadline = time.monotonic() + deadline_s
    db = home / "dry-run" / "state.db"
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if db.exists():
            store = Store.open(db.parent)
            try:
                training = [r.run_id for r in store.list_runs() if r.state == RunState.TRAINING]
            finally:
                store.close()
            if training:
                return training[0]
        time.sleep(0.2)  # polling the state file, with a deadline
    raise AssertionError("attempt 1 never reached TRAINING")


def test_ctrl_c_mid_way_removes_everything_and_exits_130(tmp_path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "SPOTRAIN_HOME": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "spotrain.cli", *SMOKE],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell's background job starts with SIGINT ignored, and Python then never raises
        # KeyboardInterrupt: the CLI gets SIGINT's default, as in a terminal.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        run_id = _wait_training(tmp_path, proc)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stdout[-3000:] + stderr[-2000:]
    assert "everything the smoke made was removed" in stdout
    records = _records(tmp_path)
    assert records and {r["state"] for r in records} == {"terminated"}, records
    (run,) = runs(tmp_path)
    assert run["run"] == run_id and run["state"] == "cancelled", run


def test_where_fis_is_refused_sigterm_stands_in_and_the_result_says_so(monkeypatch) -> None:
    """In-process, FIS refused (as AccessDenied gives on AWS): the trainer is SIGTERMed at attempt
    1's first checkpoint, logs a `sigterm` notice, and every check still passes."""
    from spotrain.cloud.aws import fis
    from spotrain.cloud.local import LocalCloud
    from spotrain.smoke import SmokeOptions, run_smoke

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    refused = fis.Sent("sigterm", "FIS refused: AccessDeniedException (test)")
    monkeypatch.setattr(LocalCloud, "send_interruption", lambda self, region, instance_id, run_id: refused)
    steps: list[str] = []
    result = run_smoke(SmokeOptions(dry_run=True), on_step=steps.append)
    assert result.interruption == "sigterm" and "AccessDenied" in result.interruption_why
    assert any("by sigterm: FIS refused" in line for line in steps), steps
    failed = [c for c in result.checks if not c.ok]
    assert not failed, failed
    (logged,) = [c for c in result.checks if c.name == "the trainer logged the interruption"]
    assert "sigterm" in logged.detail


def test_past_max_usd_the_run_is_stopped_and_nothing_is_left(monkeypatch) -> None:
    """A cap below the first minute's bill (EC2 bills 60 s at least): the smoke's watchdog (or the
    run's own --budget, whichever sees it first) ends the run; the result fails, every instance ended."""
    from spotrain.smoke import SmokeOptions, run_smoke

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    result = run_smoke(SmokeOptions(dry_run=True, max_usd=0.000001), on_step=lambda line: None)
    assert not result.ok
    home = Path(os.environ["SPOTRAIN_HOME"])
    (run,) = runs(home)
    assert run["state"] in ("cancelled", "failed"), run
    capped = [c.detail for c in result.checks if c.name == "within the caps"]
    assert (capped and "--max-usd" in capped[0]) or "budget" in run["reason"], (capped, run)
    records = _records(home)
    assert records and {r["state"] for r in records} == {"terminated"}, records


def test_a_bad_instance_or_cap_is_refused_before_anything_is_launched(tmp_path) -> None:
    for args in (("--instance", "p9.huge"), ("--max-usd", "0")):
        out = spotrain(*SMOKE, *args, home=tmp_path)
        assert out.returncode == 2 and out.stderr.startswith("error: "), out.stderr
    assert runs(tmp_path) == [] and _records(tmp_path) == []
