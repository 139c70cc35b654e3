"""`spotrain smoke`: the real path end to end at the smallest cost, or the same steps on the dry-run.

    result = run_smoke(SmokeOptions(dry_run=True), on_step=print)   # SmokeResult: checks, $, cleanup

1. The cheapest small GPU spot type of the region (by the plan's own quotes), the digits recipe, one
   attempt interrupted and resumed (--auto-resume, at most 3 attempts), `max_usd` as the budget.
2. At the first checkpoint of attempt 1, ONE real spot interruption (AWS FIS; SIGTERM of the trainer
   where FIS is refused, and the result says why).
3. A watchdog on every event: past `max_minutes` or the bill past `max_usd`, the run is downed.
4. Always (an error, Ctrl-C): the run downed if it has not ended, the FIS template removed, the run's
   leftovers swept; then the checks. KeyboardInterrupt is raised again after the cleanup.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from spotrain import catalog, plan
from spotrain.cloud.aws import fis
from spotrain.config import RunSpec, load_spec
from spotrain.contract import run_paths
from spotrain.controller import create_run, launch, prepare
from spotrain.cost import run_bill
from spotrain.errors import SpotrainError
from spotrain.remote import connect, stop
from spotrain.store import TERMINAL, RunState
from spotrain.workspace import Controller, open_controller

SMALL_MAX_GPUS, SMALL_MAX_USD_H = 1, 2.0  # the catalog's "small" GPU types: one GPU, under $2/h on demand
# Digits reaches its 98% in seconds; a target of 1.0 and a long schedule keep a real GPU busy past
# FIS's start, the dry-run's CPU for under 40 s. The first checkpoint triggers the interruption: on
# AWS after the 60 s that --checkpoint-every allows at least; the dry-run's plan is given 2 s, so that
# its interruption comes within seconds (the trainer takes any interval).
EPOCHS = {"aws": 400, "dry-run": 30}
CHECKPOINT_S = {"aws": 60.0, "dry-run": 2.0}
SIGTERM_GRACE_S = 110.0  # the SIGTERM stand-in's notice: a real one gives 120 s
COST_CHECK_S = 5.0  # how often the watchdog prices the run


@dataclass(frozen=True)
class SmokeOptions:
    region: str = "us-east-1"
    instance: str | None = None  # None: the cheapest small GPU spot type now
    max_usd: float = 2.0
    max_minutes: float = 45.0
    dry_run: bool = False
    boot_delay_s: float = 0.5  # the dry-run's simulated boot


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class SmokeResult:
    run_id: str
    instance_type: str
    checks: tuple[Check, ...]
    total_usd: float
    on_demand_usd: float
    interruption: str  # "fis" or "sigterm" ("" when none was sent)
    interruption_why: str
    removed: tuple[str, ...]  # what the cleanup removed (instances, groups, volumes, FIS templates)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)


class SmokeStopped(Exception):
    """The watchdog's cap: the run is downed by the cleanup."""


def cheapest_small_type(ctl: Controller, region: str) -> str:
    """The small GPU type whose cheapest zone in `region` is cheapest now, by the plan's zone quotes."""
    best: tuple[float, str] | None = None
    for itype in catalog.INSTANCE_TYPES.values():
        if itype.gpus > SMALL_MAX_GPUS or itype.on_demand_usd_per_hour > SMALL_MAX_USD_H:
            continue
        order = plan.zone_order(
            ctl.cloud.session(), RunSpec(recipe="digits", instance=itype.name, regions=[region])
        )
        if order.candidates and (best is None or order.candidates[0].usd_per_hour < best[0]):
            best = (order.candidates[0].usd_per_hour, itype.name)
    if best is None:
        raise SpotrainError(f"no small GPU type has a spot price in {region}", "pass --instance or --region")
    return best[1]


def smoke_spec(ctl: Controller, options: SmokeOptions) -> RunSpec:
    """The run's spec, validated as a launch's is (a bad --region or --instance is a SpotrainError)."""
    world = "dry-run" if options.dry_run else "aws"
    base = {"recipe": "digits", "regions": [options.region], "dry_run": options.dry_run}
    load_spec(None, {**base, "instance": options.instance or ""}, env={})  # refused before any call
    fields = {
        **base,
        "instance": options.instance or cheapest_small_type(ctl, options.region),
        "auto_resume": True,
        "max_attempts": 3,
        "budget": options.max_usd,
        "target_acc": 1.0,
        "max_epochs": EPOCHS[world],
        "checkpoint_every": CHECKPOINT_S["aws"],
        "boot_delay_s": options.boot_delay_s,
    }
    return load_spec(None, fields, env={})


@dataclass
class _Watch:
    """The on_event callback: the one interruption at attempt 1's first checkpoint, and the caps."""

    ctl: Controller
    run_id: str
    options: SmokeOptions
    on_step: Callable[[str], None]
    started: float = field(default_factory=time.monotonic)
    sent: fis.Sent | None = None
    stopper: threading.Thread | None = None
    last_priced: float = 0.0

    def __call__(self, event: dict[str, Any]) -> None:
        if (
            self.sent is None
            and event.get("source") == "trainer"
            and event.get("kind") == "checkpoint"
            and event.get("attempt") == 1
        ):
            self._interrupt()
        self._caps()

    def _interrupt(self) -> None:
        live = self.ctl.store.live_attempt(self.run_id)
        if live is None or live.instance_id is None:
            return
        self.sent = self.ctl.cloud.send_interruption(live.region, live.instance_id, self.run_id)
        self.on_step(f"interruption sent to {live.instance_id} by {self.sent.method}: {self.sent.why}")
        if self.sent.method == "sigterm":
            status = self.ctl.cloud.describe(live.region, live.instance_id)
            run_dir, _ = run_paths(self.ctl.cloud.workdir(live.instance_id), self.run_id)
            transport = connect(self.ctl.cloud.target(status))
            self.stopper = threading.Thread(target=_sigterm, args=(transport, run_dir), daemon=True)
            self.stopper.start()  # SIGTERM now; the trainer saves and exits 75 within its notice

    def _caps(self) -> None:
        minutes = (time.monotonic() - self.started) / 60.0
        if minutes > self.options.max_minutes:
            raise SmokeStopped(f"past --max-minutes {self.options.max_minutes:g}")
        if time.monotonic() - self.last_priced >= COST_CHECK_S:
            self.last_priced = time.monotonic()
            spent = run_bill(self.ctl.store, self.run_id).cost.total_usd
            if spent > self.options.max_usd:
                raise SmokeStopped(f"the bill ${spent:.4f} is past --max-usd {self.options.max_usd:g}")


def _sigterm(transport: Any, run_dir: str) -> None:
    """SIGTERM the trainer; SIGKILL only past a real notice's two minutes (less a margin)."""
    try:
        stop(transport, run_dir, grace_s=SIGTERM_GRACE_S)
    finally:
        transport.close()


def clean_up(ctl: Controller, run_id: str, watch: _Watch) -> list[str]:
    """Down the run if it has not ended, remove the FIS template, sweep what the run left."""
    removed: list[str] = []
    run = ctl.store.get_run(run_id)
    if run.state not in TERMINAL or ctl.store.live_attempt(run_id) is not None:
        removed += ctl.orchestrator().down(run_id)
    if watch.sent is not None and watch.sent.interruption is not None:
        fis.remove(ctl.cloud.session(), watch.sent.interruption)
        removed.append(watch.sent.interruption.template_id)
    swept = ctl.cloud.sweep(run_id)
    removed += [*swept.terminated, *swept.deleted]
    if watch.stopper is not None:
        watch.stopper.join(5)
    return sorted(set(removed))


def run_smoke(options: SmokeOptions, *, on_step: Callable[[str], None]) -> SmokeResult:
    """Launch, interrupt once, resume, check; everything it made is removed at the end, also on Ctrl-C."""
    if options.max_usd <= 0 or options.max_minutes <= 0:
        raise SpotrainError(
            "--max-usd and --max-minutes must be above 0", "e.g. --max-usd 2 --max-minutes 45"
        )
    with open_controller(dry_run=options.dry_run, boot_delay_s=options.boot_delay_s) as ctl:
        spec, the_plan = prepare(ctl, smoke_spec(ctl, options))
        if options.dry_run:
            record = replace(the_plan.record, checkpoint_s=CHECKPOINT_S["dry-run"])
            the_plan = replace(the_plan, record=record)
        run_id = create_run(ctl, spec, the_plan)
        on_step(
            f"run {run_id}: digits on {spec.instance} in {the_plan.zone.zone} (${the_plan.zone.usd_per_hour:.4f}/h)"
        )
        watch, stopped = _Watch(ctl, run_id, options, on_step), ""
        try:
            launch(ctl, run_id, on_event=watch)
        except SmokeStopped as err:
            stopped = str(err)
            on_step(f"stopped: {stopped}")
        finally:
            removed = clean_up(ctl, run_id, watch)
            on_step(f"cleanup removed: {', '.join(removed) or 'nothing left'}")
        checks = run_checks(ctl, run_id, watch.sent, spec)
        if stopped:
            checks.insert(0, Check("within the caps", False, stopped))
        bill = run_bill(ctl.store, run_id).cost
        sent = watch.sent
        return SmokeResult(
            run_id,
            spec.instance,
            tuple(checks),
            bill.total_usd,
            bill.on_demand_usd,
            sent.method if sent else "",
            sent.why if sent else "no checkpoint came, so nothing was sent",
            tuple(removed),
        )


def run_checks(ctl: Controller, run_id: str, sent: fis.Sent | None, spec: RunSpec) -> list[Check]:
    store, attempts = ctl.store, ctl.store.attempts(run_id)
    first, second = (attempts + [None, None])[:2]
    want = {"fis": "imds", "sigterm": "sigterm"}.get(sent.method if sent else "", "?")
    sources = [e.data.get("source") for e in store.events(run_id, kinds=["interruption"]) if e.attempt == 1]
    ckpts = [e.data.get("step", 0) for e in store.events(run_id, kinds=["checkpoint"]) if e.attempt == 1]
    last_ckpt = max(ckpts, default=0)
    resumed = second.resumed_from_step if second else None
    allowed = plan.zone_order(ctl.cloud.session(), spec).candidates
    run, bill = store.get_run(run_id), run_bill(store, run_id).cost
    leftovers = ctl.cloud.sweep(run_id)
    templates = fis.leftover_templates(ctl.cloud.session(), region=spec.regions[0], run_id=run_id)
    left = [*leftovers.terminated, *leftovers.deleted, *templates]
    return [
        Check(
            "the trainer logged the interruption",
            want in sources,
            f"sources {sources or 'none'}, want {want}",
        ),
        Check(
            "attempt 1 ended by the spot interruption",
            first is not None and first.end_reason == "spot-interruption",
            first.end_reason if first else "no attempt",
        ),
        Check(
            "attempt 2 resumed from attempt 1's last checkpoint",
            resumed is not None and resumed > 0 and resumed == last_ckpt,
            f"resumed from step {resumed}, last checkpoint step {last_ckpt}",
        ),
        Check(
            "attempt 2 ran in another zone",
            second is not None and (second.zone != first.zone or len(allowed) <= 1),
            f"{first.zone if first else '-'} then {second.zone if second else '-'}",
        ),
        Check("the run succeeded", run.state == RunState.SUCCEEDED, f"{run.state.value}: {run.end_reason}"),
        Check(
            "spot cost less than on-demand",
            bill.spot_usd < bill.on_demand_usd,
            f"spot ${bill.spot_usd:.4f} vs on-demand ${bill.on_demand_usd:.4f}",
        ),
        Check("nothing is left", not left, ", ".join(left) or "no instance, group, volume or FIS template"),
    ]
