"""A detached run on the laptop: the settings its supervisor reads (made from the spec and the plan, as an
attached attempt's command is), and what `status`, `cost` and `report` show of it, read from its ledger
(spotrain/onboard/ledger.py) with no process of spotrain between calls.

The cost is `cost.py`'s rules over the ledger: each attempt from its start to its end, or to its last
heartbeat when its instance was reclaimed before it could write one (the row says so), at the spot
price in force in its zone at its start (the supervisor records it), its volumes by the second, its
first hour free when EC2 ended it (exit 75, or no end at all).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import Any

from spotrain import contract, cost, plan, volumes
from spotrain.cloud.aws import autoscaling, detach
from spotrain.cloud.aws.instances import LaunchSpec
from spotrain.config import PlanRecord, RunSpec
from spotrain.contract import TRAINER_DIR
from spotrain.errors import SpotrainError
from spotrain.onboard.ledger import AttemptRecord, Ledger, RunSettings

ONBOARD_DIR = TRAINER_DIR.parent / "spotrain" / "onboard"


def settings_for(
    spec: RunSpec,
    plan: PlanRecord,
    *,
    run_id: str,
    bucket: str,
    region: str,
    group: str,
    zone_prices: dict[str, float],
    run_dir: str,
) -> RunSettings:
    """What the run's supervisor needs, decided here once: the trainer's command (the attached one's,
    less its python, which the instance's ready marker names), the limits, the prices."""
    command = contract.trainer_command(
        spec, plan, run_id=run_id, run_dir=run_dir, bucket=bucket, ready={}, python="python", every_gpu=True
    )
    ebs = plan.root_gb * cost.EBS_GP3_USD_PER_GB_MONTH / (cost.MONTH_S / 3600.0)
    provisioned = volumes.volume_usd_per_hour(0, plan.data_iops, plan.data_mib_s)
    return RunSettings(
        run_id=run_id,
        bucket=bucket,
        region=region,
        group=group,
        instance_type=plan.instance_type,
        trainer_args=command[1:],
        zone_prices=zone_prices,
        extra_usd_per_hour=ebs + provisioned,
        max_attempts=spec.max_attempts,
        budget_usd=spec.budget,
        warm_modules=tuple(contract.WARM_MODULES),
    )


def hand_off_run(cloud: Any, store: Any, run_id: str, *, state_dir: Any) -> autoscaling.GroupState:
    """`launch --detach` after the plan: the stored run handed to an Auto Scaling group in the first of
    its regions, over that region's zones in the plan's order (at the prices now), and a `detached`
    event naming the group, so `status` and `down` find it from the run id alone."""
    run = store.get_run(run_id)
    spec, planned = run.spec, run.plan
    order = plan.zone_order(cloud.session(), spec)
    if not order.candidates:
        raise SpotrainError(
            f"no zone to hand run {run_id} to", "allow more zones or regions, or raise --max-price"
        )
    region = order.candidates[0].region
    zones = {c.zone: c.usd_per_hour for c in order.candidates if c.region == region}
    bucket = cloud.bucket()
    group = autoscaling.group_name(run_id)
    settings = settings_for(
        spec, planned, run_id=run_id, bucket=bucket, region=region, group=group, zone_prices=zones,
        run_dir=f"~/spotrain/runs/{run_id}",  # the supervisor puts the instance's own run directory here
    )  # fmt: skip
    launch = LaunchSpec(
        run_id=run_id,
        attempt_id="detached",
        owner=os.environ.get("USER") or "spotrain",
        instance_type=planned.instance_type,
        root_gb=planned.root_gb,
        data_iops=planned.data_iops,
        data_mib_s=planned.data_mib_s,
        data_snapshot_id=spec.data if (spec.data or "").startswith("snap-") else None,
        max_price=spec.max_price,
        user_data=cloud.user_data(spec),
        instance_profile=cloud.instance_profile(),
    )
    cidr = spec.ssh_cidr or cloud.machines.caller_cidr()
    req = detach.HandOff(
        launch,
        settings,
        tuple(zones),
        state_dir,
        cidr,
        ((TRAINER_DIR, "trainer"), (ONBOARD_DIR, "onboard")),
        spec.ami,
    )
    if spec.dry_run:  # what the dry-run's stand-in interrupts, attempt by attempt
        from spotrain.cloud.local.stand_in_files import write_injections

        write_injections(state_dir, run_id, list(spec.inject_interruptions), list(spec.inject_rebalances))
    state = detach.hand_off(cloud.session(), req)
    store.add_event(
        run_id, "detached", {"group": state.name, "region": region, "bucket": bucket, "zones": list(zones)}
    )
    return state


def refuse_attached(store: Any, run_id: str) -> None:
    """A detached run belongs to its group: `resume` must not start (or adopt) an attached attempt."""
    if store.events(run_id, kinds=["detached"]):
        raise SpotrainError(
            f"run {run_id} is detached: its Auto Scaling group starts its attempts, not this machine",
            f"`spotrain attach {run_id} --follow` watches it; `spotrain down {run_id}` stops it",
        )


@dataclass(frozen=True)
class AttemptRow:
    """One attempt of a detached run as `status` and `cost` show it."""

    attempt: int
    instance_id: str
    instance_type: str
    zone: str
    lifecycle: str
    start: float
    end: float
    live: bool
    exit_code: int | None
    reason: str
    ended_at_heartbeat: bool  # reclaimed before it wrote its end: it ended at its last heartbeat


def attempt_rows(
    ledger: Ledger, *, live: int | Collection[int] | None = None, now: float | None = None
) -> list[AttemptRow]:
    """The ledger's attempts; `live`: the attempt (or, while Capacity Rebalancing's replacement runs
    beside the at-risk one, the attempts) whose instance the group still runs (it lasts to now)."""
    now = now or time.time()
    lives = {live} if isinstance(live, int) else set(live or ())
    rows = []
    for a in ledger.attempts:
        is_live = a.attempt in lives and a.end is None
        rows.append(
            AttemptRow(
                attempt=a.attempt,
                instance_id=a.instance_id,
                instance_type=a.instance_type,
                zone=a.zone,
                lifecycle=a.lifecycle,
                start=a.start,
                end=max(now, a.heartbeat) if is_live else a.ended_at,
                live=is_live,
                exit_code=a.exit_code,
                reason=a.reason
                or ("running" if is_live else "reclaimed: no end written, ended at its last heartbeat"),
                ended_at_heartbeat=a.end is None and not is_live,
            )
        )
    return rows


def _attempt(run_id: str, a: AttemptRecord, row: AttemptRow, settings: RunSettings) -> cost.Attempt:
    return cost.Attempt(
        f"{run_id}-{a.attempt}",
        a.instance_type,
        a.zone,
        row.start,
        row.end,
        ebs_gb=0.0,  # the volumes' whole rate is in the settings' extra $/h
        ebs_provisioned_usd_per_hour=settings.extra_usd_per_hour,
        reclaimed_by_ec2=a.reclaimed_by_ec2 and not row.live,
    )


def ledger_cost(
    ledger: Ledger,
    settings: RunSettings,
    *,
    live: int | Collection[int] | None = None,
    now: float | None = None,
) -> cost.RunCost:
    """The run's cost by cost.py's rules over its ledger, each attempt at the price it recorded at its start."""
    rows = attempt_rows(ledger, live=live, now=now)
    attempts = [_attempt(settings.run_id, a, r, settings) for a, r in zip(ledger.attempts, rows, strict=True)]
    samples = [cost.PriceSample(a.zone, a.instance_type, a.start, a.usd_per_hour) for a in ledger.attempts]
    return cost.run_cost(attempts, samples)


@dataclass(frozen=True)
class DetachedView:
    """What the laptop knows of a detached run, read now from AWS: its group, its ledger, its cost."""

    run_id: str
    region: str
    group: autoscaling.GroupState | None  # None: deleted (`down`)
    ledger: Ledger
    rows: tuple[AttemptRow, ...]
    bill: cost.RunCost

    @property
    def state(self) -> str:
        """The run's end's state, else RUNNING while the group keeps an instance, else ENDED."""
        if self.ledger.end is not None:
            return self.ledger.end.state
        return "RUNNING" if self.group is not None and self.group.desired > 0 else "ENDED"

    @property
    def reason(self) -> str:
        return self.ledger.end.reason if self.ledger.end is not None else ""


def view(cloud: Any, store: Any, run_id: str, *, now: float | None = None) -> DetachedView | None:
    """The detached run `run_id` now, or None when it was not detached (no `detached` event)."""
    handed = store.events(run_id, kinds=["detached"])
    if not handed:
        return None
    where = handed[-1].data
    sess = cloud.session()
    group = autoscaling.describe_group(sess, where["region"], run_id)
    ledger = detach.read_ledger(sess, region=where["region"], bucket=where["bucket"], run_id=run_id)
    settings = detach.read_settings(sess, region=where["region"], bucket=where["bucket"], run_id=run_id)
    serving = {iid for iid, _, s in group.instances if s == "InService"} if group is not None else set()
    last = ledger.attempts[-1] if ledger.attempts else None
    live = {a.attempt for a in ledger.attempts if a.end is None and a.instance_id in serving}
    if serving and last is not None and last.end is None:
        live.add(last.attempt)
    rows = tuple(attempt_rows(ledger, live=live, now=now))
    return DetachedView(
        run_id, where["region"], group, ledger, rows, ledger_cost(ledger, settings, live=live, now=now)
    )


def settle(store: Any, v: DetachedView) -> bool:
    """The store's run takes the end its ledger holds (SUCCEEDED, FAILED by the failure loop or a limit,
    CANCELLED), with its reason, so that `status` of every run says how a detached run ended once any
    command has read it. The ledger owns the answer; the store only keeps it. True if the state moved."""
    from spotrain.store import TERMINAL

    end = v.ledger.end
    ended = {s.name: s for s in TERMINAL}.get(end.state) if end is not None else None  # the ledger: FAILED
    if end is None or ended is None:
        return False
    return store.set_state(v.run_id, ended, reason=end.reason, data={"from_ledger": True})


def view_json(v: DetachedView) -> dict[str, Any]:
    """A detached run as `status`, `cost` and `attach` give it with --json: the ledger's attempts, the bill."""
    import dataclasses

    return {
        "run": v.run_id,
        "detached": True,
        "state": v.state,
        "reason": v.reason,
        "group": dataclasses.asdict(v.group) if v.group else None,
        "attempts": [dataclasses.asdict(r) for r in v.rows],
        "spot_usd": v.bill.spot_usd,
        "ebs_usd": v.bill.ebs_usd,
        "total_usd": v.bill.total_usd,
        "on_demand_usd": v.bill.on_demand_usd,
    }


LOG_POLL_S = 1.0  # how often `logs -f` of a detached run asks S3 for more of the log, and the ledger


def attempt_log(
    cloud: Any,
    store: Any,
    run_id: str,
    attempt: int | None = None,
    *,
    follow: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[str]:
    """The lines of a detached run's attempt's train.log, read from the run's S3 prefix, where its
    instance's trainer mirrors it as it writes (trainer/mirror.py: runs/RUN/attempts/N/train.log), so
    no instance need answer. With `follow`: on as the log grows, and into the group's later attempts
    (a line names each), until the run has ended and its last attempt's log is read to its end."""
    from spotrain.cloud.aws import storage

    v = _viewed(cloud, store, run_id)
    numbers = [a.attempt for a in v.ledger.attempts]
    if not numbers:
        raise SpotrainError(
            f"run {run_id} has no attempt yet, so no log (its group has not started an instance)",
            f"`spotrain attach {run_id} --follow` shows when it does",
        )
    number = numbers[-1] if attempt is None else attempt
    if number not in numbers:
        raise SpotrainError(
            f"run {run_id} has no attempt {number}; its attempts are {numbers[0]} to {numbers[-1]}",
            f"pass --attempt N with N from {numbers[0]} to {numbers[-1]}, or leave it out for the newest",
        )
    bucket = store.events(run_id, kinds=["detached"])[-1].data["bucket"]
    offset, pending = 0, b""
    while True:
        chunk = storage.read_attempt_log(
            cloud.session(),
            bucket=bucket,
            run_id=run_id,
            attempt_id=str(number),
            start=offset,
            region=v.region,
        )
        offset += len(chunk)
        *lines, pending = (pending + chunk).split(b"\n")
        yield from (line.decode("utf-8", "replace") for line in lines)
        if not follow:
            if pending:
                yield pending.decode("utf-8", "replace")
            return
        if chunk:
            continue  # more may be there already
        # nothing new: a later attempt means this one's log is whole (its trainer mirrored it as it
        # exited); a run that ended (its ledger's end, or its group deleted) has no more to come
        v = _viewed(cloud, store, run_id)
        later = [a for a in v.ledger.attempts if a.attempt > number]
        if later or v.state != "RUNNING":
            if pending:
                yield pending.decode("utf-8", "replace")
            offset, pending = 0, b""
            if not later:
                yield (
                    f"==> run {run_id} (detached): {v.state}" + (f": {v.reason}" if v.reason else "") + " <=="
                )
                return
            number = later[0].attempt
            yield f"==> attempt {number} of run {run_id} ({later[0].instance_id}, {later[0].zone}) <=="
            continue
        sleep(LOG_POLL_S)


def _viewed(cloud: Any, store: Any, run_id: str) -> DetachedView:
    v = view(cloud, store, run_id)
    if v is None:
        raise SpotrainError(
            f"run {run_id} is not detached", f"`spotrain logs {run_id}` reads it from its store"
        )
    return v
