"""Recovery from a spot interruption of a detached dry-run run (`launch --dry-run --detach`, the dry-run's
AWS stand-in playing the Auto Scaling group), beside bench/recovery.py's attached mode.

For each mode, RUNS launches of the digits recipe (a fresh state directory each) with one interruption
at INJECT, `without` and `with` a rebalance recommendation at REBALANCE before it, each CLI call its own
process as a user's would be. From the instances' events and the run's ledger:

- recovery_s: from the notice (the interrupted trainer's `interruption` event) to the replacement's
  first `step` event, less its boot after the notice (the notice to the replacement's ledger record:
  the instance's termination, the group's replacement, cloud-init, the bootstrap, the bundle's fetch;
  0 when the replacement was there before the notice);
- total_s: the same with its boot;
- steps_lost: the interrupted attempt's last step minus the step the replacement resumed from;
- warm_at_notice: the replacement's trainer was warm when the stand-in delivered the notice.

In `with`, the stand-in plays Capacity Rebalancing: the replacement is launched on the recommendation,
its trainer waits warm (imports done) for the interrupted attempt's end record, then resumes.

    .venv/bin/python bench/recovery_detached.py   # table on stdout, JSON in bench/results/recovery-detached.json
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import print_table, write_result  # noqa: E402
from spotrain.cloud.local.stand_in_files import recorded  # noqa: E402

RUNS = int(os.environ.get("BENCH_RUNS", "2"))
INJECT, REBALANCE = "step:30", "step:20"
RUN_DEADLINE_S = 300.0


def spotrain(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {
        "SPOTRAIN_HOME": str(home),
        "PYTHONPATH": str(REPO),
        "SPOTRAIN_STAND_IN_LINGER_S": "60",
    }
    cmd = [sys.executable, "-m", "spotrain.cli", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=REPO)


def events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def one_run(rebalance: bool) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="bench-detached-"))
    args = ["launch", "--dry-run", "--recipe", "digits", "--detach", "--inject-interruption", INJECT, "-y"]
    args += ["--inject-rebalance", REBALANCE] if rebalance else []
    t0 = time.monotonic()
    launched = spotrain(home, *args)
    launch_s = time.monotonic() - t0
    if launched.returncode != 0:
        raise SystemExit(launched.stdout + launched.stderr)
    run_id = next(w for w in launched.stdout.split() if w.startswith("digits-"))
    deadline = time.monotonic() + RUN_DEADLINE_S
    view: dict[str, Any] = {"state": "RUNNING"}
    while view["state"] == "RUNNING" and time.monotonic() < deadline:
        view = json.loads(spotrain(home, "attach", run_id, "--json").stdout.strip().splitlines()[-1])
    spotrain(home, "down", run_id, "-y")

    notices = [e for e in recorded(home / "dry-run", run_id) if e["kind"] == "notice"]
    first, second = view["attempts"][:2]
    runs = home / "dry-run" / "stand-in" / "instances"
    one = events(runs / first["instance_id"] / "opt" / "spotrain" / "runs" / run_id / "events.jsonl")
    two = events(runs / second["instance_id"] / "opt" / "spotrain" / "runs" / run_id / "events.jsonl")
    notice = next(e for e in one if e["kind"] == "interruption")
    first_step = next(e for e in two if e["kind"] == "step")
    start = next(e for e in two if e["kind"] == "start")
    last_step = max(e["step"] for e in one if e["kind"] in ("step", "interruption") and "step" in e)
    total = first_step["t"] - notice["t"]
    boot = max(0.0, second["start"] - notice["t"])
    return {
        "mode": "with" if rebalance else "without",
        "state": view["state"],
        "launch_returned_s": round(launch_s, 2),
        "zones": [first["zone"], second["zone"]],
        "recovery_s": round(total - boot, 3),
        "total_s": round(total, 3),
        "boot_s": round(boot, 3),
        "steps_lost": last_step - int(start.get("step") or 0),
        "rebalanced": any(e["kind"] == "rebalance" for e in one),
        "warm_at_notice": bool(notices and notices[0]["warm"] and notices[0]["warm_pid_alive"]),
    }


def main() -> int:
    rows = [one_run(rebalance) for _ in range(RUNS) for rebalance in (False, True)]
    print_table(
        f"detached dry-run: recovery from one interruption at {INJECT} (rebalance at {REBALANCE} in `with`)",
        ["mode", "state", "zones", "recovery s", "total s", "boot s", "steps lost", "warm", "launch s"],
        [
            [r["mode"], r["state"], "->".join(r["zones"]), r["recovery_s"], r["total_s"], r["boot_s"],
             r["steps_lost"], r["warm_at_notice"], r["launch_returned_s"]]
            for r in rows
        ],
    )  # fmt: skip
    modes = {
        m: {
            "median_recovery_s": statistics.median(r["recovery_s"] for r in rows if r["mode"] == m),
            "median_steps_lost": statistics.median(r["steps_lost"] for r in rows if r["mode"] == m),
            "median_total_s": statistics.median(r["total_s"] for r in rows if r["mode"] == m),
        }
        for m in ("without", "with")
    }
    write_result(
        "recovery-detached", {"inject": INJECT, "rebalance": REBALANCE, "modes": modes, "rows": rows}
    )
    return 0 if all(r["state"] == "SUCCEEDED" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
