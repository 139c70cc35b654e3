"""How fast `spotrain status` answers, beside `spotrain --help` (the floor: Python, click, the command
tree), both measured here, in the same script, on the same machine at the same moment.

The state directory is a temporary SPOTRAIN_HOME seeded with real store calls (`Store.create_run`,
`add_attempt`, `add_trainer_events`, `add_price_samples`, `set_state`: what a controller writes):
RUNS runs, a third each finished (one attempt, SUCCEEDED), interrupted (one attempt ended by a spot
interruption) and live (an attempt still TRAINING that no controller watches), half in the real store
and half in the dry-run's, each with STEPS step events, a few evals and checkpoints, and a price
history of one price an hour. Then each command runs REPEATS times as a subprocess (`python -m spotrain.cli ...`, a fresh
interpreter as a user's shell starts one) after one warm-up; the table gives the median and the
fastest, and the median CPU seconds (user + system) beside them, which a loaded shared machine
inflates less than the wall time; the JSON keeps every time.

Cases: `--help`; `status` with RUNS runs; `status` with one run; `status NAME` of one finished run
found by its name. The target: `status` with RUNS runs under TARGET_S.

The subprocesses run without PYTHONDONTWRITEBYTECODE (an installed spotrain has its .pyc; without
them each start compiles the modules again and measures the compiler, not spotrain).

    OMP_NUM_THREADS=1 .venv/bin/python bench/status.py   # table on stdout, JSON in bench/results/status.json
"""

from __future__ import annotations

import os
import resource
import shutil
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

RUNS = int(os.environ.get("BENCH_RUNS", "100"))
REPEATS = int(os.environ.get("BENCH_REPEATS", "15"))
STEPS = 200  # step events a run has stored (digits logs one every few steps)
TARGET_S = 0.15
ZONE, REGION, ITYPE = "us-east-1a", "us-east-1", "g4dn.xlarge"
NOW = time.time()
HOUR = int(NOW // 3600) * 3600  # the price history changes on the hour, as the dry-run's does


def seed_run(store, n: int, kind: str, dry_run: bool) -> str:
    """One run as a controller leaves it: `kind` is finished, interrupted or live."""
    from spotrain.config import PlanRecord, RunSpec
    from spotrain.cost import PriceSample
    from spotrain.store import RunState

    t0 = NOW - 3600 - n * 60
    run_id = f"digits-20261204-{n:04d}-{n:04x}"
    spec = RunSpec(recipe="digits", instance=ITYPE, dry_run=dry_run)
    store.create_run(run_id, spec, dry_run, plan=PlanRecord(ITYPE, 1, 30, 60.0), name=f"run-{n}")
    # one price a zone an hour over the last two days (the dry-run's history changes about every other)
    store.add_price_samples(
        REGION, [PriceSample(ZONE, ITYPE, HOUR - 3600 * h, 0.2 + h / 1e3) for h in range(48)]
    )
    store.set_state(run_id, RunState.PROVISIONING, reason="requested")
    a = store.add_attempt(
        run_id,
        instance_id=f"i-{n:017x}",
        region=REGION,
        zone=ZONE,
        instance_type=ITYPE,
        spot_usd_per_hour=0.2,
        requested_at=t0,
    )
    store.update_attempt(run_id, a.number, started_at=t0 + 5, training_started_at=t0 + 10)
    store.set_state(run_id, RunState.TRAINING, reason="trainer started")
    events: list[dict[str, Any]] = [{"t": t0 + 10, "kind": "start", "config": {"epochs": 10}}]
    events += [
        {
            "t": t0 + 10 + i,
            "kind": "step",
            "step": i * 5,
            "loss": 1.0 / (i + 1),
            "lr": 0.1,
            "img_per_s": 900.0,
            "epoch": i / 20,
        }
        for i in range(STEPS)
    ]
    events += [
        {"t": t0 + 10 + 20 * e, "kind": "eval", "top1": 0.5 + e / 30, "epoch": e} for e in range(1, 10)
    ]
    events += [
        {
            "t": t0 + 15 + 20 * c,
            "kind": "checkpoint",
            "step": 100 * c,
            "bytes": 10**6,
            "blocked_s": 0.1,
            "where": w,
        }
        for c in range(1, 5)
        for w in ("local", "s3")
    ]
    store.add_trainer_events(run_id, a.number, events, offset=10**5)
    end = t0 + 10 + STEPS
    if kind == "finished":
        store.update_attempt(
            run_id, a.number, ended_at=end, end_reason="finished", exit_code=0, last_step=STEPS * 5
        )
        store.set_state(run_id, RunState.SUCCEEDED, reason="target reached")
    elif kind == "interrupted":
        store.update_attempt(
            run_id, a.number, ended_at=end, end_reason="spot-interruption", exit_code=75, last_step=STEPS * 5
        )
        store.add_event(run_id, "reclaim", {"by": "ec2"}, attempt=a.number)
        store.set_state(run_id, RunState.INTERRUPTED, reason="spot interruption")
    else:
        store.update_attempt(run_id, a.number, last_step=STEPS * 5)
    return run_id


def seed(home: Path, runs: int) -> list[str]:
    from spotrain.settings import load_settings
    from spotrain.store import Store

    settings = load_settings(state_dir=home)
    ids = []
    for dry_run in (False, True):
        with Store.open(settings.state_dir_for(dry_run)) as store:
            half = range(runs // 2) if not dry_run else range(runs // 2, runs)
            kinds = ("finished", "interrupted", "live")
            ids += [seed_run(store, n, kinds[n % 3], dry_run) for n in half]
    return ids


def timed(args: list[str], home: Path, repeats: int) -> tuple[list[float], list[float]]:
    """Wall seconds, and CPU seconds (user + system: what the load of a shared machine inflates
    less), of `python -m spotrain.cli ARGS` in a fresh interpreter, after one warm-up run."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(SPOTRAIN_HOME=str(home), PYTHONPATH=str(REPO), COLUMNS="120")
    cmd = [sys.executable, "-m", "spotrain.cli", *args]
    out = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({out.returncode}): {out.stderr}")
    times, cpu = [], []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(cmd, env=env, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return times, cpu


def main() -> int:
    many = Path(tempfile.mkdtemp(prefix="spotrain-status-"))
    seed(many, RUNS)  # run-0 is the real store's first: finished
    one_store = Path(tempfile.mkdtemp(prefix="spotrain-status-one-"))
    seed(one_store, 1)  # one run, in the dry-run's store
    cases = [
        ("--help", ["--help"], many),
        (f"status, {RUNS} runs", ["status"], many),
        ("status, 1 run", ["status"], one_store),
        ("status NAME (finished)", ["status", "run-0"], many),
    ]
    measured = {name: timed(args, home, REPEATS) for name, args, home in cases}
    for home in (many, one_store):
        shutil.rmtree(home)
    results = {name: wall for name, (wall, _) in measured.items()}
    cpu = {name: c for name, (_, c) in measured.items()}
    rows = [
        [name, statistics.median(ts), min(ts), max(ts), statistics.median(cpu[name])]
        for name, ts in results.items()
    ]
    omp = os.environ.get("OMP_NUM_THREADS", "unset")
    print_table(
        f"spotrain status vs --help: median of {REPEATS} fresh interpreters (OMP_NUM_THREADS={omp})",
        ["command", "median s", "min s", "max s", "median cpu s"],
        rows,
    )
    status_s = statistics.median(results[f"status, {RUNS} runs"])
    verdict = "under" if status_s < TARGET_S else "OVER"
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    # the ratio to --help moves less than either time with the machine's load
    ratio = status_s / statistics.median(results["--help"])
    print(
        f"\nstatus with {RUNS} runs: {status_s:.3f} s, {verdict} the {TARGET_S} s target, "
        f"{ratio:.2f}x --help (load average {load})"
    )
    write_result(
        "status",
        {
            "runs": RUNS,
            "repeats": REPEATS,
            "omp_num_threads": omp,
            "load_average": os.getloadavg(),
            "target_s": TARGET_S,
            "status_over_help": round(ratio, 3),
            "median_s": {name: round(statistics.median(ts), 4) for name, ts in results.items()},
            "times_s": {name: [round(t, 4) for t in ts] for name, ts in results.items()},
            "median_cpu_s": {name: round(statistics.median(c), 4) for name, c in cpu.items()},
        },
    )
    return 0 if status_s < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
