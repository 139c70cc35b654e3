"""Recovery from a spot interruption, in the dry-run: how long from the notice to training again, and
how many training steps the interruption cost.

RUNS dry-run launches of the digits recipe (fresh state directory each, `--auto-resume`, one injected
interruption at INJECT of the schedule, `--boot-delay BOOT_S`), driven in this process through
`spotrain.controller` so that every controller event and the moment the notice is posted at the
instance's IMDS are timed here. For each run:

- recovery_s: from the notice (posted at the fake IMDS) to the first `step` event of the next attempt,
  minus the simulated boot delay. Target: under 15 s.
- steps_lost: steps done before the notice (the interrupted attempt's last step: its last `step` event
  or, later, the step its `interruption` event names) minus the step the next attempt resumed from (its `start` event's `step`). Target: at most one checkpoint interval's steps
  (the interval in seconds x the steps per second measured in the run).

The time is split into phases, each from the store's and the controller's timestamps: the trainer
noticing and saving (notice -> its `interruption` event), the controller seeing the exit and ending the
attempt, requesting the next instance, its boot (the simulated delay), sync and trainer start, the
trainer's own start (python, torch, data, checkpoint download: -> its `start` event) and its first step.
`import torch` is timed alone as well, since it is most of the trainer's start on a small recipe.

Each seed runs twice, alternating: `cold` (SPOTRAIN_WARM_START=0, the trainer started by a fresh
python after the sync, as before) and `warm` (a warm process imports torch and the trainer's other
heavy modules while the bootstrap ends and the bundle syncs, and takes the trainer's command after it;
remote/warm.py). Target for warm: under 2.5 s.

    .venv/bin/python bench/recovery.py          # table on stdout, JSON in bench/results/recovery.json
    env -u OMP_NUM_THREADS ... bench/recovery.py   # OMP unset: bench/results/recovery-ompNone.json
"""

from __future__ import annotations

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

RUNS = int(os.environ.get("BENCH_RUNS", "3"))
INJECT, BOOT_S = "40%", 2.0
TARGET_S = 15.0
WARM_TARGET_S = 2.5  # issue 15: the attached mode with the warm start
PHASES = (
    ("notice_to_saved", "notice", "trainer_interruption"),
    ("saved_to_attempt_ended", "trainer_interruption", "interrupted"),
    ("request_next", "interrupted", "provisioning"),
    ("boot_and_sync", "provisioning", "training"),
    ("trainer_start", "training", "trainer_start"),
    ("first_step", "trainer_start", "first_step"),
)


def one_run(seed: int, warm: bool) -> dict[str, Any]:
    """One dry-run launch with one interruption; the marks (unix s) and step numbers it went through.
    `warm` False turns the warm trainer start off (SPOTRAIN_WARM_START=0): the old path."""
    home = tempfile.mkdtemp(prefix="spotrain-recovery-")
    os.environ["SPOTRAIN_HOME"] = home
    os.environ["SPOTRAIN_WARM_START"] = "1" if warm else "0"
    from spotrain import controller, workspace
    from spotrain.config import load_spec

    flags = {
        "recipe": "digits",
        "dry_run": True,
        "inject_interruptions": [INJECT],
        "auto_resume": True,
        "boot_delay_s": BOOT_S,
        "seed": seed,
    }
    spec = load_spec(None, flags)
    marks: dict[str, float] = {}
    seen: list[dict[str, Any]] = []

    def on_event(event: dict[str, Any]) -> None:
        seen.append(event)
        if event.get("source") == "trainer" and event.get("kind") == "interruption":
            marks.setdefault("notice", event["t"])  # the trainer's own (pinned) notice, if not posted yet
        if event.get("source") == "controller" and event.get("kind") == "state" and "notice" in marks:
            marks.setdefault(event["to"], event["t"])

    with workspace.open_controller(dry_run=True, boot_delay_s=BOOT_S, seed=seed) as ctl:
        spec, plan = controller.prepare(ctl, spec)
        run_id = controller.create_run(ctl, spec, plan)
        machines = ctl.cloud.machines_here  # its watcher posts the notice, not the cloud's verb
        post = machines.inject_interruption

        def timed_post(instance_id: str) -> dict[str, str]:
            marks.setdefault("notice", time.time())
            return post(instance_id)

        machines.inject_interruption = timed_post  # the notice's own moment, not the trainer's view of it
        outcome = controller.launch(ctl, run_id, on_event=on_event)
        attempts = ctl.store.attempts(run_id)
        events = ctl.store.events(run_id)
        checkpoint_s = ctl.store.get_run(run_id).plan.checkpoint_s
    first, second = attempts[0], attempts[1]
    by = {(e.attempt, e.kind): e for e in reversed(events)}  # the first event of each kind per attempt
    marks["trainer_interruption"] = by[(1, "interruption")].t
    # A notice pinned to a step is raised by the trainer itself, and posted at the IMDS once it stopped
    # for it: the earlier of the two is the notice's moment.
    marks["notice"] = min(marks.get("notice", marks["trainer_interruption"]), marks["trainer_interruption"])
    marks["trainer_start"] = by[(2, "start")].t
    marks["first_step"] = by[(2, "step")].t
    steps = [e for e in events if e.kind == "step" and e.attempt == 1]
    steps_per_s = (steps[-1].data["step"] - steps[0].data["step"]) / max(steps[-1].t - steps[0].t, 1e-9)
    resumed_from = by[(2, "start")].data["step"]
    # Step events come every few steps; the interruption event has the step the trainer stopped at.
    last_step = max(first.last_step or 0, by[(1, "interruption")].data["step"])
    started = [e for e in events if e.kind == "trainer_start" and e.attempt == 2]
    return {
        "run": run_id,
        "mode": "warm" if warm else "cold",
        "warm_started": bool(started and started[0].data["warm"]),
        "outcome": outcome.state.value,
        "zones": [first.zone, second.zone],
        "last_step_before": last_step,
        "resumed_from": resumed_from,
        "steps_lost": last_step - resumed_from,
        "checkpoint_interval_s": checkpoint_s,
        "steps_per_s": round(steps_per_s, 1),
        "interval_steps": int(checkpoint_s * steps_per_s),
        "recovery_s": round(marks["first_step"] - marks["notice"] - BOOT_S, 3),
        "phases_s": {name: round(marks[b] - marks[a], 3) for name, a, b in PHASES},
    }


def import_seconds(module: str, repeats: int = 3) -> float:
    """Median wall time of `python -c 'import MODULE'` in a fresh interpreter (what the trainer pays)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", f"import {module}"], check=True, cwd=REPO)
        times.append(time.perf_counter() - start)
    return round(statistics.median(times), 3)


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    worst = max(r["recovery_s"] for r in rows)
    return {
        "runs": len(rows),
        "median_recovery_s": round(statistics.median(r["recovery_s"] for r in rows), 3),
        "worst_recovery_s": worst,
        "within_target_s": worst < TARGET_S,
        "under_warm_target_s": worst < WARM_TARGET_S,
        "steps_lost_within_interval": all(r["steps_lost"] <= r["interval_steps"] for r in rows),
        "median_phases_s": {
            n: round(statistics.median(r["phases_s"][n] for r in rows), 3) for n, _, _ in PHASES
        },
    }


def main() -> int:
    # cold and warm alternate, so that a machine shared with others loads both alike
    rows = [one_run(seed, warm) for seed in range(RUNS) for warm in (False, True)]
    imports = {m: import_seconds(m) for m in ("sys", "torch", "trainer.train")}
    omp = os.environ.get("OMP_NUM_THREADS")
    print_table(
        f"recovery from one interruption at {INJECT}, digits, dry-run, boot delay {BOOT_S:g} s, "
        f"OMP_NUM_THREADS={omp}",
        ["run", "mode", "recovery s", "steps lost", *(name for name, _, _ in PHASES)],
        [
            [r["run"], r["mode"], r["recovery_s"], r["steps_lost"], *(r["phases_s"][n] for n, _, _ in PHASES)]
            for r in rows
        ],
    )
    print_table("a fresh interpreter importing", ["module", "seconds"], [[m, s] for m, s in imports.items()])
    modes = {mode: summary([r for r in rows if r["mode"] == mode]) for mode in ("cold", "warm")}
    print_table(
        "by mode",
        ["mode", "median s", "worst s", f"< {WARM_TARGET_S:g} s", "steps lost ok"],
        [
            [
                m,
                x["median_recovery_s"],
                x["worst_recovery_s"],
                x["under_warm_target_s"],
                x["steps_lost_within_interval"],
            ]
            for m, x in modes.items()
        ],
    )
    warm_used = all(r["warm_started"] for r in rows if r["mode"] == "warm")
    print(f"\nevery warm run's second trainer started in its warm process: {warm_used}")
    write_result(
        f"recovery-omp{omp}" if omp != "1" else "recovery",
        {
            "recipe": "digits",
            "inject": INJECT,
            "boot_delay_s": BOOT_S,
            "runs_per_mode": RUNS,
            "omp_num_threads": omp,
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
            "target_s": TARGET_S,
            "warm_target_s": WARM_TARGET_S,
            "modes": modes,
            "warm_used": warm_used,
            "import_s": imports,
            "rows": rows,
        },
    )
    return 0 if all(x["within_target_s"] and x["steps_lost_within_interval"] for x in modes.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
