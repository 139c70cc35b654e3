"""How the CLI shows things: rich tables and one-line progress, and the --json shapes for scripts.

Functions here take records and return rich renderables, strings or plain dicts; only cli.py prints them.
Every duration is formats.duration and every amount of money formats.usd, here and in the report.
rich.table is imported by the functions that build one: `status` piped to a file or a script draws its
table as plain text (`status_text`) and imports none of it (bench/status.py).
"""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING, Any

from spotrain.formats import duration, usd, usd_per_hour

if TYPE_CHECKING:
    from rich.table import Table

    from spotrain.cloud import PriceTable
    from spotrain.cost import Bill
    from spotrain.plan import Plan


def plan_table(spec, plan: Plan) -> Table:
    from rich.table import Table

    z, est, ck = plan.zone, plan.estimate, plan.checkpoint
    t = Table(
        title=f"plan: {spec.run if spec.run else spec.recipe} on {plan.instance_type}"
        + (" (dry-run)" if spec.dry_run else ""),
        show_header=False,
        title_justify="left",
    )
    t.add_column(style="bold", no_wrap=True)
    t.add_column(overflow="fold")  # an SSM path longer than the terminal is folded, not cut
    regions = sorted({c.region for c in plan.order.candidates})
    where = (
        f"{len(plan.zones)} zones in {', '.join(regions)}" if len(plan.zones) > 1 else "the only zone allowed"
    )
    then = ", then ".join(c.zone for c in plan.order.candidates[1:4]) + (
        ", ..." if len(plan.zones) > 4 else ""
    )
    nodes = f"{est.nodes} x " if est.nodes > 1 else ""  # one zone, one placement group: all at its price
    t.add_row("instance", f"{nodes}{plan.instance_type} in {z.zone} (cheapest of {where})")
    if then:
        t.add_row("then", f"{then} (tried in this order if capacity runs out)")
    t.add_row("image", f"{plan.image.image_id}: {plan.image.reason}")
    t.add_row(
        "spot price",
        f"{usd_per_hour(z.usd_per_hour)} now (24 h: {usd(z.low_24h)} .. {usd(z.high_24h)}), "
        f"{z.discount:.0%} under on-demand {usd_per_hour(z.on_demand_usd_per_hour)}"
        + (f"; {nodes}that: {usd_per_hour(est.usd_per_hour)}" if nodes else ""),
    )
    expected = est.basis  # "unknown" for the user's own command: no time, no $, no time-to-target
    if est.hours is not None:
        expected = (
            f"{duration(est.hours * 3600)} of training (H:MM:SS): {usd(est.spot_usd)} at spot, "
            f"{usd(est.on_demand_usd)} on demand ({expected})"
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
    """The launch's live view: an event as one short sentence; None for events not worth one (steps).
    No run prefix (the launch names its run once) and no raw records: what a person reads in a log."""
    if event.get("source") == "controller":
        return _controller_line(event)
    return _trainer_line(event)


def _attempt(event: dict[str, Any]) -> str:
    return f"attempt {event['attempt']}: " if event.get("attempt") else ""


def _controller_line(event: dict[str, Any]) -> str | None:
    kind, a = event.get("kind"), _attempt(event)
    if kind == "state":
        return f"{event['to'].upper()}: {event['reason']}"
    if kind == "budget":
        return f"BUDGET: {event['message']}"
    if kind in ("warning", "restart", "waiting") and "message" in event:
        return f"{a}{kind}: {event['message']}"
    if kind == "launch":
        avoid = event.get("demoted") or []
        return f"{a}requesting a spot {event['instance_type']}" + (
            f", {' and '.join(avoid)} last (it interrupted the attempt before)" if avoid else ""
        )
    if kind == "stage":  # the bootstrap's progress, data first (data-s3, data-init 3/8)
        return f"{a}boot stage {event['stage']}"
    if kind == "data_ready":
        return f"{a}data ready: {event['source']} read ahead in {duration(event['seconds'])}"
    if kind == "sync":
        return (
            f"{a}trainer synced: {event['files']} files, {_size(event['bytes'])} in {event['seconds']:.2f} s"
        )
    if kind == "inject":
        return f"{a}an interruption will be injected at {event['at']}"
    if kind == "reclaim":
        return f"{a}instance reclaimed by {event['by']}" if event.get("by") else None
    return None


def _size(n: float) -> str:
    """Bytes as a person reads them: 164806 -> 161 KiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit in ("B", "KiB") else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _trainer_line(event: dict[str, Any]) -> str | None:
    kind, a = event.get("kind"), _attempt(event)
    if kind == "eval":
        # the user's own command may report a step and not an epoch, top5 and not top1
        at = f"epoch {event['epoch']:.2f}" if "epoch" in event else f"step {event.get('step')}"
        scores = ", ".join(
            f"{name} {event[k]:.2%}" for k, name in (("top1", "top-1"), ("top5", "top-5")) if k in event
        )
        return f"{a}eval at {at}: {scores}"
    if kind == "checkpoint" and event.get("where") == "s3":
        return f"{a}checkpoint at step {event['step']} in S3 ({_size(event['bytes'])})"
    if kind == "rebalance":
        return (
            f"{a}rebalance recommendation ({event['source']}, {event['notice_time']}): "
            f"checkpoint {event['checkpoint']} in {event['checkpoint_s']:.2f} s, training goes on"
        )
    if kind == "interruption":
        return (
            f"{a}interruption notice ({event['source']}, for {event['notice_time']}): "
            f"saved at step {event['step']}"
        )
    if kind == "start":
        how = f"resumed from step {event['step']}" if event.get("resumed_from") else "fresh start"
        return f"{a}trainer started on {event.get('device')} x{event.get('world_size')}, {how}"
    if kind == "done":
        why = {"target": "target reached", "schedule": "schedule done"}.get(
            event.get("reason"), event.get("reason")
        )
        return f"{a}trainer done at step {event.get('step')}: {why}"
    if kind == "error":
        return f"{a}trainer error: {event.get('message', '')}"
    return None


def cost_table(bill: Bill) -> Table:
    """One row an attempt, and a total row whose every figure is the sum of its column: the on-demand
    column is the instance's seconds at the on-demand price, as the spot column is at spot; the totals
    that add EBS and S3 to both are the caption's (cost.py's RunCost says what each sum holds)."""
    from rich import box
    from rich.table import Table

    c, u = bill.cost, bill.usage
    types = sorted({a.instance_type for a in u.records})
    one_type = len(types) == 1  # the usual run: its type in the title, a column less in 80 columns
    title = f"cost of {bill.run_id}" + (f" on {types[0]}" if one_type else "")
    t = Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        padding=(0, 1, 0, 0),
        pad_edge=False,
        show_edge=False,
    )
    names = (
        "#",
        "zone",
        *(() if one_type else ("instance",)),
        "billed",
        "end",
        "spot $",
        "EBS $",
        "on-demand $",
    )
    for name in names:
        left = name in ("zone", "instance", "end")
        t.add_column(name, justify="left" if left else "right", no_wrap=name != "end", overflow="fold")
    for a, ac in zip(u.records, c.attempts, strict=True):
        t.add_row(
            str(a.number) + ("" if ac.node is None else f".{ac.node}"),  # attempt.node of a multi-node run
            a.zone,
            *(() if one_type else (a.instance_type,)),
            duration(ac.billed_s),
            (a.end_reason or "running") + (" (free hour)" if ac.free_hour else ""),
            usd(ac.spot_usd),
            usd(ac.ebs_usd),
            usd(ac.on_demand_usd),
        )
    t.add_section()
    t.add_row(
        "total",
        *([""] if one_type else ["", ""]),
        duration(sum(ac.billed_s for ac in c.attempts)),
        "",
        usd(c.spot_usd),
        usd(c.ebs_usd),
        usd(sum(ac.on_demand_usd for ac in c.attempts)),
    )
    t.caption = (
        f"wall {duration(u.wall_s)}, {c.gpu_hours:.3f} GPU-h; S3 {usd(c.s3_usd)}\n"
        f"all in {usd(c.total_usd)} vs {usd(c.on_demand_usd)} on demand (EBS and S3 in both): "
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


def prices_json(table: PriceTable, *, nodes: int = 1) -> dict[str, Any]:
    """`spotrain prices --json`: the table's figures, keys named with their units as in `cost --json`
    ($ to 6 places), zones cheapest first, `now` in ISO 8601 UTC; `nodes` and each zone's
    `nodes_usd_per_hour` (N x its price: what a run of N instances pays an hour there)."""
    zones = [
        {
            "zone": q.zone,
            "usd_per_hour": round(q.usd_per_hour, 6),
            "nodes_usd_per_hour": round(nodes * q.usd_per_hour, 6),
            "discount_fraction": round(q.discount, 6),
            "low_24h_usd_per_hour": round(q.low_24h, 6),
            "high_24h_usd_per_hour": round(q.high_24h, 6),
        }
        for q in table.zones
    ]
    return {
        "instance_type": table.instance_type,
        "region": table.region,
        "now": table.now.isoformat(),
        "on_demand_usd_per_hour": round(table.on_demand_usd_per_hour, 6),
        "on_demand_as_of": table.on_demand_as_of,
        "on_demand_source": table.on_demand_source,
        "nodes": nodes,
        "zones": zones,
    }


def outcome_json(outcome, cost: dict[str, Any]) -> dict[str, Any]:
    """`launch --json` and `resume --json`: how the run ended, and its bill in `cost --json`'s shape."""
    return {"run": outcome.run_id, "state": outcome.state.value, "reason": outcome.reason, "cost": cost}


def smoke_json(result) -> dict[str, Any]:
    """`smoke --json`: every check, the interruption and what the cleanup removed."""
    return {
        "run": result.run_id,
        "instance_type": result.instance_type,
        "ok": result.ok,
        "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in result.checks],
        "total_usd": round(result.total_usd, 6),
        "on_demand_usd": round(result.on_demand_usd, 6),
        "interruption": result.interruption,
        "interruption_why": result.interruption_why,
        "removed": list(result.removed),
    }


def status_table(rows: list[dict[str, Any]]) -> Table:
    """The runs in 80 columns: the id whole (it is what the other commands take; it starts with the
    recipe, so the recipe has no column), a dry-run's state marked `*`."""
    from rich import box
    from rich.table import Table

    # one space between columns (the divider): an imagenet run's id and figures fit in 80
    t = Table(title="runs", title_justify="left", box=box.SIMPLE_HEAD, padding=0, show_edge=False)
    for name in STATUS_COLUMNS:
        t.add_column(
            name,
            justify="right" if name in STATUS_RIGHT else "left",
            no_wrap=name not in ("state", "instance"),
            overflow="fold",
        )
    for cells in map(_status_cells, rows):
        t.add_row(*cells)
    if any(r["dry_run"] for r in rows):
        t.caption, t.caption_justify = STATUS_CAPTION, "left"
    return t


STATUS_COLUMNS = ("run", "state", "instance", "tries", "epoch", "top-1", "spent")
STATUS_RIGHT = ("tries", "epoch", "top-1", "spent")
STATUS_CAPTION = "*: a dry-run (this machine, no AWS); tries: attempts; top-1: the best eval; spent: $ so far"


def _status_cells(r: dict[str, Any]) -> tuple[str, ...]:
    return (
        r["run"],
        r["state"] + ("*" if r["dry_run"] else ""),
        r["instance"] or "",
        str(r["attempts"]),
        "" if r["epoch"] is None else f"{r['epoch']:.2f}",
        "" if r["best_top1"] is None else f"{r['best_top1']:.1%}",
        "" if r["usd"] is None else usd(r["usd"]),
    )


def status_text(rows: list[dict[str, Any]], width: int) -> str | None:
    """`status_table` as rich lays it out on a stream that is no terminal (no styles), character for
    character, without rich: drawing 100 runs with rich.table is most of what `status` costs. None when
    the table is wider than `width`: then rich's wrapping of columns decides, and `status_table` draws it."""
    cells = [_status_cells(r) for r in rows]
    widths = [max(len(c) for c in col) for col in zip(STATUS_COLUMNS, *cells, strict=True)]
    total = sum(widths) + len(widths) - 1
    if total > width:
        return None

    def line(row: tuple[str, ...]) -> str:
        return " ".join(
            c.rjust(w) if name in STATUS_RIGHT else c.ljust(w)
            for c, w, name in zip(row, widths, STATUS_COLUMNS, strict=True)
        )

    lines = ["runs".ljust(total), line(STATUS_COLUMNS), "\u2500" * total, *map(line, cells)]
    if any(r["dry_run"] for r in rows):
        lines += [part.ljust(total) for part in textwrap.wrap(STATUS_CAPTION, total)]
    return "\n".join(lines)


def attempts_table(v):
    """A detached run's attempts from its ledger (detached.DetachedView), its group and its cost."""
    from rich.table import Table

    from spotrain.formats import duration, usd

    group = v.group
    members = ", ".join(f"{i} ({z}, {s})" for i, z, s in group.instances) if group else "deleted"
    out = Table(
        title=f"run {v.run_id} (detached): {v.state}" + (f": {v.reason}" if v.reason else ""),
        caption=f"group {group.name if group else '-'}: desired {group.desired if group else 0}; "
        f"instances: {members or 'none'}; cost {usd(v.bill.total_usd)} "
        f"(on demand {usd(v.bill.on_demand_usd)})",
        caption_justify="left",
    )
    for name in ("attempt", "instance", "zone", "lifecycle", "lasted", "exit", "$", "how it ended"):
        out.add_column(name)
    for row, c in zip(v.rows, v.bill.attempts, strict=True):
        spot = "free hour" if c.free_hour else usd(c.spot_usd + c.ebs_usd)
        out.add_row(
            str(row.attempt),
            row.instance_id,
            row.zone,
            row.lifecycle,
            duration(row.end - row.start),
            "" if row.exit_code is None else str(row.exit_code),
            spot,
            row.reason,
        )
    return out
