"""A run's launch and its logs, on a workspace's Controller (workspace.py): the spec resolved, the plan
made and recorded with the run, the orchestrator driving it, a live run caught up for `status`, and an
attempt's train.log read (live or kept, followed into later attempts). The CLI calls these functions;
they never print and never exit.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from spotrain import catalog
from spotrain.errors import SpotrainError
from spotrain.settings import Settings, load_settings
from spotrain.store import TERMINAL, RunRecord, Store
from spotrain.workspace import Controller, controller_for_run, open_controller

if TYPE_CHECKING:  # imported where used: `status` needs none of pydantic, the plan, the clouds
    from spotrain.config import RunSpec
    from spotrain.orchestrator import OnEvent, Outcome
    from spotrain.plan import Plan


# ---------------------------------------------------------------------------------------------- launch
def resolve(spec: RunSpec) -> RunSpec:
    """The spec with its defaults filled in from the recipe (the instance type)."""
    if spec.instance:
        return spec
    return spec.model_copy(update={"instance": catalog.recipe(spec.recipe).instance})


def past_figures(store: Store, recipe: str, instance: str) -> dict[str, float | int | None]:
    """What earlier runs of this recipe on this type measured: throughput, checkpoint cost, interruptions."""
    import statistics

    rates, blocked, interruptions, hours = [], [], 0, 0.0
    for run in store.list_runs():
        if run.spec.instance != instance:
            continue
        for a in store.attempts(run.run_id):
            hours += ((a.ended_at or time.time()) - (a.started_at or a.requested_at)) / 3600.0
            interruptions += a.end_reason == "spot-interruption"
        if run.spec.recipe == recipe:
            rates += [
                e.data["img_per_s"]
                for e in store.events(run.run_id, kinds=["step"])
                if e.data.get("img_per_s")
            ]
        blocked += [
            e.data["blocked_s"]
            for e in store.events(run.run_id, kinds=["checkpoint"])
            if "blocked_s" in e.data
        ]
    return {
        "images_per_s": statistics.median(rates) if rates else None,
        "checkpoint_cost_s": statistics.median(blocked) if blocked else None,
        "interruptions": interruptions,
        "instance_hours": hours,
    }


def prepare(ctl: Controller, spec: RunSpec) -> tuple[RunSpec, Plan]:
    """The resolved spec and the plan to show before launching (reads prices and the image)."""
    from spotrain.plan import make_plan

    spec = resolve(spec)
    if ctl._cloud is None:  # the cloud is made for this spec's regions and bucket
        ctl.regions, ctl.bucket = list(spec.regions), spec.bucket
    if spec.inject_interruptions and not ctl.dry_run:
        raise SpotrainError("--inject-interruption works only with --dry-run", "add --dry-run, or drop it")
    past = past_figures(ctl.store, spec.recipe, spec.instance)
    plan = make_plan(
        ctl.cloud.session(),
        spec,
        measured_images_per_s=past["images_per_s"],
        measured_cost_s=past["checkpoint_cost_s"],
        interruptions=past["interruptions"],
        instance_hours=past["instance_hours"],
    )
    return spec, plan


def check_name(name: str, settings: Settings | None = None) -> str:
    """`name` if a new run may take it: well formed, and no run of either store (the real one, the
    dry-run's) has it as its name or its id, so that `status NAME` finds one run. Asked before the
    plan, so that a bad name is refused before anything is launched; `create_run` asks again."""
    settings = settings or load_settings()
    for dry_run in (False, True):
        state_dir = settings.state_dir_for(dry_run)
        if (state_dir / "state.db").exists():
            with Store.open(state_dir) as store:
                store.check_name(name)
    from spotrain.store_records import check_run_name

    return check_run_name(name)


def create_run(ctl: Controller, spec: RunSpec, plan: Plan, name: str | None = None) -> str:
    """Record the run (state REQUESTING) with its plan and its name; returns its id."""
    if name is not None:
        check_name(name, ctl.settings)
    run_id = ctl.store.new_run_id(spec.recipe)
    ctl.store.create_run(run_id, spec, spec.dry_run, plan=plan.record, name=name)
    return run_id


def launch(ctl: Controller, run_id: str, *, on_event: OnEvent | None = None, ssh: bool = False) -> Outcome:
    return ctl.orchestrator(on_event, ssh=ssh).drive(run_id)


def launch_detached(ctl: Controller, run_id: str):
    """`launch --detach`: the planned run handed to an Auto Scaling group (detached.py); returns at once."""
    from spotrain import detached

    return detached.hand_off_run(ctl.cloud, ctl.store, run_id, state_dir=ctl.state_dir)


def refresh(ctl: Controller, run_id: str) -> str | None:
    """Catch an unwatched live run up before `status` shows it: its trainer's new events, from the
    instance, into the store. Returns what the store cannot say yet (e.g. the trainer exited), or
    None. A run a controller watches is left to it (its lock says so); an ended one needs nothing."""
    from spotrain.layout import run_lock_if_free

    run = ctl.store.get_run(run_id)
    if run.state in TERMINAL or ctl.store.live_attempt(run_id) is None:
        return None  # nothing to pull, and no cloud (a moto server, AWS) made for nothing
    with run_lock_if_free(ctl.state_dir, run_id) as free:
        return ctl.orchestrator().catch_up(run_id) if free else None


def attempt_log(
    ctl: Controller, run_id: str, attempt: int | None = None, *, follow: bool = False
) -> Iterator[str]:
    """The lines of an attempt's train.log: kept in the state directory once the attempt ended, read
    from the instance while it lives. With `follow`, it goes on as the trainer writes, and on into the
    run's later attempts (a separator line names each) until the run ends or waits for the user."""
    attempts = ctl.store.attempts(run_id)
    if not attempts:
        raise SpotrainError(
            f"run {run_id} has no attempt yet, so no log",
            f"wait for its instance to start: `spotrain status {run_id}`",
        )
    numbers = [a.number for a in attempts]
    number = numbers[-1] if attempt is None else attempt  # 0 is a number asked for, not "the newest"
    if number not in numbers:
        raise SpotrainError(
            f"run {run_id} has no attempt {number}; its attempts are {numbers[0]} to {numbers[-1]}",
            f"pass --attempt N with N from {numbers[0]} to {numbers[-1]}, or leave it out for the newest",
        )
    while True:
        yield from _one_attempt_log(ctl, run_id, number, follow=follow)
        if not follow:
            return
        after = _next_attempt(ctl, run_id, number)
        if isinstance(after, str):
            yield after
            return
        if after is None:
            return
        number = after.number
        yield f"==> attempt {number} of run {run_id} ({after.instance_id}) <=="


def node_log(ctl: Controller, run_id: str, attempt: int | None, node: int) -> Iterator[str]:
    """The kept train.log of node `node` of a multi-node run's attempt (the newest when None); node 0's
    is the attempt's own (`attempt_log`). A node's log is kept when its attempt ends."""
    from spotrain.layout import node_log_path

    numbers = [a.number for a in ctl.store.attempts(run_id)]
    number = (numbers or [0])[-1] if attempt is None else attempt
    ranks = [n.node_rank for n in ctl.store.nodes(run_id, number)]
    if node not in ranks:
        has = f"nodes 0 to {ranks[-1]}" if ranks else "one node (0)"
        raise SpotrainError(
            f"attempt {number} of run {run_id} has no node {node}: it has {has}",
            f"pass --node R with R from 0 to {max(ranks or [0])}",
        )
    path = node_log_path(ctl.state_dir, run_id, number, node)
    if not path.exists():
        raise SpotrainError(
            f"node {node}'s log of attempt {number} is not kept yet: it is kept when the attempt ends",
            f"see node 0's as it runs: `spotrain logs {run_id} -f`",
        )
    yield from path.read_text(encoding="utf-8").splitlines()


POLL_S = 0.2  # how often a follower asks the store whether the attempt or the run moved on


def _attempt(ctl: Controller, run_id: str, number: int):
    return next(a for a in ctl.store.attempts(run_id) if a.number == number)


def _watched(ctl: Controller, run_id: str) -> bool:
    from spotrain.layout import run_lock_if_free

    with run_lock_if_free(ctl.state_dir, run_id) as free:
        return not free


def _one_attempt_log(ctl: Controller, run_id: str, number: int, *, follow: bool) -> Iterator[str]:
    """One attempt's lines, each once: live from the instance (with `follow`, until its trainer ends
    for good: a trainer started again in the same attempt is followed on), then what its kept log
    holds beyond them."""
    from spotrain.layout import log_path

    kept, shown = log_path(ctl.state_dir, run_id, number), 0
    while True:
        record = _attempt(ctl, run_id, number)
        if record.ended_at is not None or not follow and kept.exists():
            if not kept.exists() and not ctl.orchestrator().keep_lost_log(run_id, record):
                raise SpotrainError(
                    f"the log of attempt {number} of {run_id} was not kept, and neither its instance "
                    "nor the run's S3 prefix has it any more",
                    "the trainer's events are still in `spotrain status` and the run's S3 prefix",
                )
            yield from kept.read_text(encoding="utf-8").splitlines()[shown:]
            return
        for line in _live_lines(ctl, run_id, record, follow=follow, skip=shown):
            shown += 1
            yield line
        if not follow:
            return
        # The trainer stopped: the attempt ends (its log is kept), or its trainer starts again (exit 69)
        while True:
            record, run = _attempt(ctl, run_id, number), ctl.store.get_run(run_id)
            if record.ended_at is not None or _running(ctl, run_id, record):
                break
            if run.state in TERMINAL or not _watched(ctl, run_id):
                return
            time.sleep(POLL_S)


def _running(ctl: Controller, run_id: str, record) -> bool:
    from spotrain.contract import run_paths
    from spotrain.remote import RemoteError, connect, process_status

    try:
        transport = connect(ctl.cloud.target(ctl.cloud.describe(record.region, record.instance_id)))
    except SpotrainError:
        return False
    try:
        run_dir, _ = run_paths(ctl.cloud.workdir(record.instance_id), run_id)
        return process_status(transport, run_dir).running
    except RemoteError:
        return False
    finally:
        transport.close()


def _live_lines(ctl: Controller, run_id: str, record, *, follow: bool, skip: int) -> Iterator[str]:
    """The instance's train.log past its first `skip` lines; with `follow`, until its trainer has
    started and ended (a trainer not started yet, the instance provisioning, is waited for)."""
    from spotrain.contract import run_paths
    from spotrain.remote import RemoteError, connect, process_status
    from spotrain.remote import follow as follow_file

    status = ctl.cloud.describe(record.region, record.instance_id)
    transport = connect(ctl.cloud.target(status))
    run_dir, _ = run_paths(ctl.cloud.workdir(record.instance_id), run_id)

    def done() -> bool:
        if not follow:
            return True
        proc = process_status(transport, run_dir)
        if proc.state == "absent":  # not started yet: wait, unless the attempt ended meanwhile
            return _attempt(ctl, run_id, record.number).ended_at is not None
        return not proc.running

    try:
        for n, line in enumerate(follow_file(transport, f"{run_dir}/train.log", stop=done)):
            if n >= skip:
                yield line.text
    except RemoteError:
        return  # the instance went: what is left comes from the kept log
    finally:
        transport.close()


def _next_attempt(ctl: Controller, run_id: str, number: int):
    """The attempt after `number` once it exists; None when the run ended without one; a closing
    line when the run waits for the user (no controller watches it)."""
    from spotrain.store import RunState

    while True:
        later = [a for a in ctl.store.attempts(run_id) if a.number > number]
        if later:
            return later[0]
        run = ctl.store.get_run(run_id)
        if run.state in TERMINAL:
            return None
        if not _watched(ctl, run_id):
            what = "is interrupted" if run.state == RunState.INTERRUPTED else f"is {run.state.value}"
            return f"==> run {run_id} {what} and no controller watches it: `spotrain resume {run_id}` goes on <=="
        time.sleep(POLL_S)


def status_rows(run_id: str | None = None, settings: Settings | None = None) -> list[dict[str, Any]]:
    """`status`'s rows: one run's, caught up from its instance first when no controller watches it
    (its `trainer` note says what the store cannot yet), else every run of both stores (as stored:
    catching up every live run would open a cloud, a moto server, for each)."""
    if run_id:
        with controller_for_run(run_id, settings=settings) as ctl:
            note = refresh(ctl, run_id)
            return [{**status_row(ctl.store, ctl.store.get_run(run_id)), "trainer": note}]
    settings = settings or load_settings()
    rows: list[dict[str, Any]] = []
    for dry_run in (False, True):
        if not (settings.state_dir_for(dry_run) / "state.db").exists():
            continue  # no store is made only to find it empty
        with open_controller(dry_run=dry_run, settings=settings) as ctl:
            # --region: only its runs (the spec, and pydantic with it, read only when one was given)
            runs = [
                r
                for r in ctl.store.list_runs()
                if ctl.settings.region is None or ctl.settings.allows(r.spec.regions)
            ]
            rows += [status_row(ctl.store, run) for run in runs]
    return rows


def status_row(store: Store, run: RunRecord) -> dict[str, Any]:
    """What `spotrain status` shows of one run, and its --json: from the store alone, in a few queries
    (the bill's attempts and evals reused, the last step event, not all of them) and without validating
    the spec (no pydantic)."""
    from spotrain.cost import run_bill

    try:
        bill = run_bill(store, run.run_id, run=run)
    except Exception:  # noqa: BLE001 - a run with no price yet shows no $ rather than failing status
        bill = None
    attempts = list(bill.usage.records) if bill else store.attempts(run.run_id)
    if bill and bill.usage.target_metric == "top1":  # the bill read these evals' top1 already
        top1 = [e.value for e in bill.usage.evals]
    else:
        top1 = [e.data.get("top1", 0) for e in store.events(run.run_id, kinds=["eval"])]
    last_step = store.events(run.run_id, kinds=["step"], newest=True)
    return {
        "run": run.run_id,
        "name": run.name,
        "state": run.state.value,
        "recipe": run.recipe,
        "instance": run.instance,
        "attempts": len(attempts),
        "epoch": last_step[0].data.get("epoch") if last_step else None,
        "step": next((a.last_step for a in reversed(attempts) if a.last_step is not None), None),
        "best_top1": max(top1, default=None),
        "usd": None if bill is None else round(bill.cost.total_usd, 4),
        "dry_run": run.dry_run,
        "age_s": round(time.time() - run.created_at, 1),
        "reason": run.end_reason,
    }
