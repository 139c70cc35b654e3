"""The report's summary: `spotrain cost --json`'s numbers (the same dict, from the same bill) plus the
run's state, lost work and throughput; as (label, value) lines for the HTML table and compare."""

from __future__ import annotations

import statistics
from collections import Counter
from typing import Any

from spotrain import catalog
from spotrain.cost import AttemptCost, Bill
from spotrain.errors import SpotrainError
from spotrain.formats import duration, usd
from spotrain.report.data import RunData, load
from spotrain.store import Store


def bill_json(bill: Bill) -> dict[str, Any]:
    """`spotrain cost --json`, and the first keys of the report's summary: $ to 6 places, s to 3."""
    c, u, tt = bill.cost, bill.usage, bill.cost.to_target
    money = ("spot_usd", "ebs_usd", "s3_usd", "total_usd", "on_demand_usd", "savings_usd", "savings_fraction")
    return {
        "run": u.run_id,
        "wall_s": round(u.wall_s, 3),
        "gpu_hours": round(c.gpu_hours, 6),
        **{k: round(getattr(c, k), 6) for k in money},
        "target": u.target,
        "target_metric": u.target_metric,
        "to_target": None
        if tt is None
        else {"seconds": round(tt.seconds, 3), "usd": round(tt.usd, 6), "value": tt.value},
        "attempts": [_attempt_json(a, ac) for a, ac in zip(u.records, c.attempts, strict=True)],
    }


def _attempt_json(a, ac: AttemptCost) -> dict[str, Any]:
    ids = {"number": a.number, "instance_id": a.instance_id, "zone": a.zone, "instance_type": a.instance_type}
    if ac.node is not None:  # one entry a node of a multi-node attempt
        ids["node"] = ac.node
    money = {k: round(getattr(ac, k), 6) for k in ("spot_usd", "ebs_usd", "on_demand_usd")}
    steps = {"resumed_from_step": a.resumed_from_step, "last_step": a.last_step}
    return {
        **ids,
        "billed_s": ac.billed_s,
        "end_reason": a.end_reason,
        "free_hour": ac.free_hour,
        **money,
        **steps,
    }


def lost_work(d: RunData) -> tuple[int, int]:
    """(steps redone, interruptions): for each interrupted attempt followed by another, the steps it had
    done by the notice (its last step event or the interruption's step) less the step the next resumed at."""
    lost = interruptions = 0
    for i, a in enumerate(d.attempts):
        nxt = d.attempts[i + 1] if i + 1 < len(d.attempts) else None
        notices = [e for e in d.events["interruption"] if e.attempt == a.number]
        if not notices and a.end_reason != "spot-interruption":
            continue
        interruptions += 1
        if nxt is None:
            continue
        mine = [e.data.get("step") for e in d.events["step"] + notices if e.attempt == a.number]
        done = max((s for s in mine if isinstance(s, int)), default=a.last_step or 0)
        starts = [e.data.get("step") for e in d.events["start"] if e.attempt == nxt.number]
        resumed = starts[0] if starts and isinstance(starts[0], int) else nxt.resumed_from_step or 0
        lost += max(0, done - resumed)
    return lost, interruptions


def throughput(d: RunData) -> tuple[float | None, float | None, float | None]:
    """(median images/s of the step events, utilisation of the GPUs' peak, that peak in TFLOPS);
    utilisation and peak are None where the catalog knows no peak or no FLOPs for the recipe."""
    rates = [
        e.data["img_per_s"] for e in d.events["step"] if isinstance(e.data.get("img_per_s"), int | float)
    ]
    if not rates:
        d.note("summary", "throughput: no step event with img_per_s yet")
        return None, None, None
    img_s = statistics.median(rates)
    types = Counter(a.instance_type for a in d.attempts).most_common(1)
    name = types[0][0] if types else d.run.spec.instance
    try:
        peak = catalog.instance_type(name).peak_tflops * d.run.spec.nodes
        flops = catalog.recipe(d.run.spec.recipe).train_flops_per_sample
    except SpotrainError:
        d.note("summary", f"utilisation: the catalog knows no peak TFLOPS for '{name}'")
        return img_s, None, None
    return img_s, img_s * flops / (peak * 1e12), peak


def summarize(d: RunData) -> dict[str, Any]:
    """`spotrain cost --json`'s numbers (bill_json) (the same dict) plus the run's state, lost work and throughput."""
    out: dict[str, Any] = bill_json(d.bill) if d.bill else {"run": d.run.run_id}
    lost, interruptions = lost_work(d)
    img_s, util, peak = throughput(d)
    spec = d.run.spec
    out.update(
        state=d.run.state.value,
        recipe=spec.recipe,
        instance=spec.instance,
        dry_run=d.run.dry_run,
        n_attempts=len(d.attempts),
        interruptions=interruptions,
        lost_steps=lost,
        img_per_s=img_s,
        utilisation=util,
        peak_tflops=peak,
        **scores(d),
    )
    return out


def scores(d: RunData) -> dict[str, Any]:
    """The best top1 of any eval and the last eval's scores (a recipe's, or the user's own command's
    metric lines): what the run reached, whether or not it had a target."""
    evals = [e.data for e in d.events.get("eval", [])]
    best = max((e["top1"] for e in evals if isinstance(e.get("top1"), int | float)), default=None)
    last = {k: v for k, v in evals[-1].items() if k not in ("t", "kind")} if evals else None
    return {"best_top1": best, "last_eval": last}


def run_summary(store: Store, run_id: str) -> dict[str, Any]:
    """The report's summary alone, without matplotlib: what `spotrain compare` shows side by side."""
    return summarize(load(store, run_id))


def _money_rows(s: dict[str, Any]) -> list[tuple[str, str]]:
    if "total_usd" not in s:
        return [("$", "unknown: the run cannot be priced yet")]
    tt, metric = s["to_target"], f"{s['target_metric']} {s['target']}"
    return [
        ("wall-clock", duration(s["wall_s"])),
        (f"time to {metric}", duration(tt["seconds"]) if tt else "not reached"),
        (f"$ to {metric}", usd(tt["usd"]) if tt else "not reached"),
        ("total $", usd(s["total_usd"])),
        ("  spot / EBS / S3", " / ".join(usd(s[k]) for k in ("spot_usd", "ebs_usd", "s3_usd"))),
        ("on-demand equivalent", usd(s["on_demand_usd"])),
        ("savings", f"{usd(s['savings_usd'])} ({s['savings_fraction']:.0%})"),
        ("GPU-hours", f"{s['gpu_hours']:.3f}"),
    ]


def summary_rows(s: dict[str, Any]) -> list[tuple[str, str]]:
    """The summary as (label, value) lines: the HTML table and `spotrain compare`."""
    util = "unknown"
    if s["utilisation"] is not None:
        util = f"{s['utilisation']:.3%} of {s['peak_tflops']:,.0f} TFLOPS peak"
        util += " (dry-run: a CPU did the work)" if s.get("dry_run") else ""
    return [
        ("run", s["run"] + (" (dry-run)" if s.get("dry_run") else "")),
        ("state", str(s.get("state"))),
        ("recipe on instance", f"{s.get('recipe')} on {s.get('instance')}"),
        *_money_rows(s),
        ("attempts", f"{s['n_attempts']} ({s['interruptions']} interrupted)"),
        ("lost work", f"{s['lost_steps']} steps redone after interruptions"),
        ("throughput", "unknown" if s["img_per_s"] is None else f"{s['img_per_s']:,.0f} images/s (median)"),
        ("utilisation", util),
        ("best top1", "none reported" if s.get("best_top1") is None else f"{s['best_top1']:.4f}"),
    ]


def compare_table(summaries: list[dict[str, Any]]):
    """`spotrain compare`: one column a run, one row a summary line (a rich Table)."""
    from rich.table import Table

    t = Table(title="runs side by side", title_justify="left")
    t.add_column("")
    columns = [dict(summary_rows(s)) for s in summaries]
    for s in summaries:
        t.add_column(s["run"], justify="right")
    labels = list(dict.fromkeys(label for col in columns for label in col))
    for label in labels:
        t.add_row(label, *(col.get(label, "") for col in columns))
    return t
