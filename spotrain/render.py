"""How the CLI shows things: rich tables and one-line progress, and the --json shapes for scripts.

Functions here take records and return rich renderables or plain dicts; only cli.py prints them.
Every duration is formats.duration and every amount of money formats.usd, here and in the report.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from rich.table import Table

from spotrain.formats import duration, usd, usd_per_hour

if TYPE_CHECKING:
    from spotrain.cost import Bill
    from spotrain.plan import Plan


def plan_table(spec, plan: Plan) -> Table:
    z, est, ck = plan.zone, plan.estimate, plan.checkpoint
    t = Table(
        title=f"plan: {spec.run if spec.run else spec.recipe} on {plan.instance_type}"
        + (" (dry-run)" if spec.dry_run else ""),
        show_header=False,
        title_justify="left",
    )
    t.add_column(style="bold")
    t.add_column()
    regions = sorted({c.region for c in plan.order.candidates})
    where = (
        f"{len(plan.zones)} zones in {', '.join(regions)}" if len(plan.zones) > 1 else "the only zone allowed"
    )
    then = ", then ".join(c.zone for c in plan.order.candidates[1:4]) + (
        ", ..." if len(plan.zones) > 4 else ""
    )
    t.add_row("instance", f"{plan.instance_type} in {z.zone} (cheapest of {where})")
    if then:
        t.add_row("then", f"{then} (tried in this order if capacity runs out)")
    t.add_row("image", f"{plan.image.image_id}: {plan.image.reason}")
    t.add_row(
        "spot price",
        f"{usd_per_hour(z.usd_per_hour)} now (24 h: {usd(z.low_24h)} .. {usd(z.high_24h)}), "
        f"{z.discount:.0%} under on-demand {usd_per_hour(z.on_demand_usd_per_hour)}",
    )
    expected = est.basis  # "unknown" for the user's own command: no time, no $, no time-to-target
    if est.hours is not None:
        expected = (
            f"{est.hours:.2f} h: {usd(est.spot_usd)} at spot, {usd(est.on_demand_usd)} on demand ({expected})"
        )
    t.add_row("expected", expected)
    t.add_row("checkpoints", f"every {ck.seconds:.0f} s ({ck.basis})")
    v = plan.volume
    t.add_row(
        "volume",
        f"gp3 {v.gb} GB, {v.iops} IOPS, {v.mib_s} MiB/s: {usd_per_hour(v.usd_per_hour)}"
        + (
            f" ({usd_per_hour(v.extra_usd_per_hour)} of it for the {v.need_mib_s:.0f} MiB/s the GPUs read)"
            if v.provisioned
            else " (the baseline)"
        ),
    )
    if spec.budget:
        t.add_row("budget", f"{usd(spec.budget)}, at most {spec.max_attempts} attempts")
    return t


def progress_line(event: dict[str, Any]) -> str | None:
    """One line for the launch's live view; None for events not worth a line (most steps)."""
    kind, src = event.get("kind"), event.get("source")
    if src == "controller":
        if kind == "state":
            return f"[{event['run']}] {event['to'].upper()}: {event['reason']}"
        if kind == "budget":
            return f"[{event['run']}] BUDGET: {event['message']}"
        if kind in ("warning", "restart", "waiting") and "message" in event:
            a = f" (attempt {event['attempt']})" if event.get("attempt") else ""
            return f"[{event['run']}] {kind}{a}: {event['message']}"
        if kind == "stage":  # the bootstrap's progress, data first (data-s3, data-init 3/8)
            return f"[{event['run']}] boot (attempt {event['attempt']}): {event['stage']}"
        if kind == "data_ready":
            return f"[{event['run']}] data ready (attempt {event['attempt']}): {event['source']} read ahead in {duration(event['seconds'])}"
        if kind in ("launch", "sync", "inject", "warning", "restart"):
            extra = {k: v for k, v in event.items() if k not in ("run", "source", "kind", "t")}
            return f"[{event['run']}] {kind}: " + ", ".join(f"{k} {v}" for k, v in extra.items())
        return None
    a = event.get("attempt")
    if kind == "eval":
        # the user's own command may report a step and not an epoch, top5 and not top1
        at = f"epoch {event['epoch']:.2f}" if "epoch" in event else f"step {event.get('step')}"
        scores = ", ".join(f"{k} {event[k]:.4f}" for k in ("top1", "top5") if k in event)
        return f"  attempt {a} | eval {at}: {scores}"
    if kind == "checkpoint" and event.get("where") == "s3":
        return f"  attempt {a} | checkpoint step {event['step']} in S3 ({event['bytes'] / 1e6:.2f} MB)"
    if kind == "rebalance":
        return (
            f"  attempt {a} | rebalance recommendation ({event['source']}, {event['notice_time']}): "
            f"checkpoint {event['checkpoint']} in {event['checkpoint_s']:.2f} s, training goes on"
        )
    if kind == "interruption":
        return f"  attempt {a} | interruption ({event['source']}, notice for {event['notice_time']}): saved at step {event['step']}"
    if kind == "start":
        how = f"resumed from step {event['step']}" if event.get("resumed_from") else "fresh start"
        return f"  attempt {a} | trainer started on {event.get('device')} x{event.get('world_size')}: {how}"
    if kind in ("done", "error"):
        return f"  attempt {a} | {kind}: " + (event.get("reason") or event.get("message", ""))
    return None


def cost_table(bill: Bill) -> Table:
    c = bill.cost
    t = Table(title=f"cost of {bill.run_id}", title_justify="left")
    for name in ("attempt", "zone", "instance", "billed", "end", "spot $", "EBS $", "on-demand $"):
        t.add_column(name, justify="left" if name in ("attempt", "zone", "instance", "end") else "right")
    u = bill.usage
    for a, ac in zip(u.records, c.attempts, strict=True):
        t.add_row(
            str(a.number),
            a.zone,
            a.instance_type,
            duration(ac.billed_s),
            (a.end_reason or "running") + (" (free hour)" if ac.free_hour else ""),
            usd(ac.spot_usd),
            usd(ac.ebs_usd),
            usd(ac.on_demand_usd),
        )
    t.add_section()
    t.add_row(
        "total",
        "",
        f"{c.gpu_hours:.3f} GPU-h",
        duration(u.wall_s) + " wall",
        "",
        usd(c.spot_usd),
        usd(c.ebs_usd),
        usd(c.on_demand_usd),
    )
    t.caption = (
        f"S3 {usd(c.s3_usd)}; total {usd(c.total_usd)} vs {usd(c.on_demand_usd)} on demand: "
        f"saved {usd(c.savings_usd)} ({c.savings_fraction:.0%})"
    )
    if c.to_target is not None:
        t.caption += (
            f"\nto {u.target_metric} {u.target}: {duration(c.to_target.seconds)} and "
            f"{usd(c.to_target.usd)} (first eval at {c.to_target.value:.4f})"
        )
    elif u.target is not None:
        t.caption += f"\ntarget {u.target_metric} {u.target} not reached"
    if any(ac.free_hour for ac in c.attempts):
        t.caption += (
            "\nfree hour: EC2 interrupted the instance in its first hour, so AWS bills no spot $ for it"
        )
    t.caption_justify = "left"
    return t


def status_rows(store, runs) -> list[dict[str, Any]]:
    """One dict a run: what `spotrain status` shows, and its --json."""
    from spotrain.cost import run_bill

    rows = []
    for run in runs:
        attempts = store.attempts(run.run_id)
        evals = store.events(run.run_id, kinds=["eval"])
        steps = store.events(run.run_id, kinds=["step"])
        try:
            spent = run_bill(store, run.run_id).cost.total_usd
        except Exception:  # noqa: BLE001 - a run with no price yet shows no $ rather than failing status
            spent = None
        rows.append(
            {
                "run": run.run_id,
                "state": run.state.value,
                "recipe": run.spec.recipe,
                "instance": run.spec.instance,
                "attempts": len(attempts),
                "epoch": steps[-1].data.get("epoch") if steps else None,
                "step": next((a.last_step for a in reversed(attempts) if a.last_step is not None), None),
                "best_top1": max((e.data.get("top1", 0) for e in evals), default=None),
                "usd": None if spent is None else round(spent, 4),
                "dry_run": run.dry_run,
                "age_s": round(time.time() - run.created_at, 1),
                "reason": run.end_reason,
            }
        )
    return rows


def status_table(rows: list[dict[str, Any]]) -> Table:
    t = Table(title="runs", title_justify="left")
    for name in ("run", "state", "recipe", "instance", "attempts", "epoch", "best top1", "$ so far"):
        t.add_column(
            name, justify="right" if name in ("attempts", "epoch", "best top1", "$ so far") else "left"
        )
    for r in rows:
        t.add_row(
            r["run"] + (" (dry-run)" if r["dry_run"] else ""),
            r["state"],
            r["recipe"] or "",
            r["instance"] or "",
            str(r["attempts"]),
            "" if r["epoch"] is None else f"{r['epoch']:.2f}",
            "" if r["best_top1"] is None else f"{r['best_top1']:.4f}",
            "" if r["usd"] is None else usd(r["usd"]),
        )
    return t
