"""A run's bill: its attempts, price samples and events from the store, priced by cost.py.

cost.py holds the rules as pure functions; this module only gathers what they need from the store, so
`spotrain cost`, `spotrain status`, the budget check and the report all price a run the same way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from spotrain import catalog, cost


@dataclass(frozen=True)
class Bill:
    run_id: str
    cost: cost.RunCost
    attempts: list  # AttemptRecord, in the order of cost.attempts
    wall_s: float  # from the first attempt's request to the last one's end (or now)
    target: float | None
    target_metric: str


def _target(spec: dict) -> tuple[float, str]:
    recipe = catalog.recipe(spec["recipe"])
    return float(spec.get("target_acc") or recipe.target), recipe.target_metric


def _s3_usage(store, run_id: str, wall_s: float) -> cost.S3Usage:
    """S3 from the trainer's upload events: the kept checkpoints' bytes over the run, one PUT a file."""
    uploads = [e.data for e in store.events(run_id, kinds=["checkpoint"]) if e.data.get("where") == "s3"]
    if not uploads:
        return cost.S3Usage()
    mean_bytes = sum(u.get("bytes", 0) for u in uploads) / len(uploads)
    kept = min(len(uploads), 3)
    return cost.S3Usage(
        gb_stored=mean_bytes * kept / 1e9,
        seconds=wall_s,
        put_requests=4 * len(uploads),
        get_requests=4 * len(store.attempts(run_id)),
    )


def run_bill(store, run_id: str, *, now: float | None = None) -> Bill:
    """What the run has cost so far (all of it, once it has ended)."""
    now = now or time.time()
    run = store.get_run(run_id)
    root_gb = catalog.recipe(run.spec["recipe"]).root_volume_gb
    records, attempts, samples = [], [], []
    for a in store.attempts(run_id):
        start = a.started_at or a.requested_at
        end = a.ended_at or now
        records.append(a)
        attempts.append(
            cost.Attempt(
                f"{run_id}-{a.number}", a.instance_type, a.zone, start, max(end, start), ebs_gb=root_gb
            )
        )
        found = store.price_samples(
            region=a.region, instance_type=a.instance_type, zones=[a.zone], start=start, end=end
        )
        if not any(p.t <= start for p in found) and a.spot_usd_per_hour:
            # A live attempt's history is stored when it ends; until then the price quoted when it was
            # requested is the one in force at its start (never "now"'s price for a past second).
            found.insert(0, cost.PriceSample(a.zone, a.instance_type, a.requested_at, a.spot_usd_per_hour))
        samples += found
    target, metric = _target(run.spec)
    evals = [
        cost.EvalPoint(e.t, e.data[metric]) for e in store.events(run_id, kinds=["eval"]) if metric in e.data
    ]
    first = min((a.requested_at for a in records), default=now)
    wall = max((a.ended_at or now for a in records), default=now) - first
    usage = _s3_usage(store, run_id, wall)
    return Bill(
        run_id,
        cost.run_cost(attempts, samples, s3=usage, evals=evals, target=target),
        records,
        wall,
        target,
        metric,
    )


def spent_and_projected(store, run_id: str, *, next_attempt: bool = False) -> tuple[float, float]:
    """$ spent so far, and $ more the schedule needs at the current attempt's rate (0 when unknown):
    remaining share of the schedule x the training hours the done share took x the price now.
    With `next_attempt` (deciding whether to launch another instance), the projection is at least that
    instance's billed minimum (60 s) at the last attempt's price: a new instance never costs less."""
    bill = run_bill(store, run_id)
    spent = bill.cost.total_usd
    if not bill.attempts:
        return spent, 0.0
    rate = bill.cost.attempts[-1].spot_usd / max(bill.cost.attempts[-1].billed_s, 1) * 3600.0
    floor = cost.MIN_BILLED_S / 3600.0 * rate if next_attempt else 0.0
    steps = [e for e in store.events(run_id, kinds=["step"]) if "epoch" in e.data]
    starts = store.events(run_id, kinds=["start"])
    if not steps or not starts:
        return spent, floor
    epochs = starts[-1].data.get("config", {}).get("epochs") or 0
    done = steps[-1].data["epoch"] / epochs if epochs else 0.0
    if not 0.0 < done < 1.0:
        return spent, floor
    trained_s = sum(
        (a.ended_at or time.time()) - a.training_started_at for a in bill.attempts if a.training_started_at
    )
    return spent, max(trained_s * (1.0 - done) / done / 3600.0 * rate, floor)
