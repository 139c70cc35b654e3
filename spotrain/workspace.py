"""The workspace: the state directory, its store and a cloud (AWS, or the dry-run's on this machine) put
together as a `Controller`, and what is asked across both stores: a run by its id or a prefix, the
newest run, every run's status rows, and `down` of one run or of all. A run is found by its id, its
name (`launch -n`) or a unique prefix of its id.

The dry-run keeps its own state directory (`STATE/dry-run`), so its runs never mix with real ones;
commands that name a run look in the real store first, then the dry-run's. These functions never print
and never exit.
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spotrain.errors import SpotrainError
from spotrain.settings import Settings, load_settings
from spotrain.store import TERMINAL, RunRecord, RunState, Store

if TYPE_CHECKING:  # the orchestrator (the clouds, paramiko) only when a command drives a run
    from spotrain.orchestrator import OnEvent, Orchestrator


@dataclass
class Controller:
    settings: Settings
    dry_run: bool
    state_dir: Path
    store: Store
    boot_delay_s: float = 2.0
    seed: int = 0
    regions: list[str] = field(default_factory=lambda: ["us-east-1"])  # the run's (AWS only)
    bucket: str | None = None  # the run's --bucket (AWS only; None: the one `spotrain init` made)
    run: RunRecord | None = None  # the run the cloud is for (controller_for_run): its spec says how
    _cloud: Any = field(default=None, repr=False)

    @property
    def cloud(self):
        """Made on first use: `status` and `cost` need only the store, never AWS or a moto server (nor
        the run's spec validated: pydantic)."""
        if self._cloud is None:
            if self.run is not None:
                spec = self.run.spec
                self.boot_delay_s, self.seed = spec.boot_delay_s, spec.seed
                self.regions, self.bucket = list(spec.regions), spec.bucket
            if self.dry_run:
                from spotrain.cloud.local import LocalCloud

                self._cloud = LocalCloud(self.state_dir, boot_delay_s=self.boot_delay_s, seed=self.seed)
            else:
                from spotrain.cloud.aws.cloud import AwsCloud

                self._cloud = AwsCloud(
                    regions=self.regions,
                    bucket=self.bucket,
                    profile=self.settings.profile,
                    state_dir=self.state_dir,  # its keys: a fresh `resume` or `logs -f` can SSH too
                )
        return self._cloud

    def refuse_attached_beside_stand_in(self) -> None:
        """An attached dry-run attempt's instance boots in this process's own moto; while a detached
        dry-run run lives, its stand-in holds moto (the cloud joins that one, whose backend this
        process cannot play). Asked before the plan, so nothing is launched."""
        if not self.dry_run:
            return
        from spotrain.cloud.local.stand_in_files import live_endpoint

        if live_endpoint(self.state_dir) is not None:
            raise SpotrainError(
                "an attached dry-run attempt while a detached dry-run run lives (its stand-in holds moto)",
                "wait for that run to end, or `spotrain down` it, then launch again",
            )

    def orchestrator(
        self, on_event: OnEvent | None = None, *, ssh: bool = False, poll_s: float = 0.5
    ) -> Orchestrator:
        from spotrain.orchestrator import Orchestrator

        return Orchestrator(self.store, self.cloud, self.state_dir, on_event=on_event, ssh=ssh, poll_s=poll_s)

    def close(self) -> None:
        if self._cloud is not None:
            self._cloud.close()
        self.store.close()


@contextlib.contextmanager
def open_controller(
    *, dry_run: bool, boot_delay_s: float = 2.0, seed: int = 0, settings: Settings | None = None
) -> Iterator[Controller]:
    settings = settings or load_settings()
    state_dir = settings.dry_run_dir() if dry_run else settings.state_dir
    ctl = Controller(settings, dry_run, state_dir, Store.open(state_dir), boot_delay_s, seed)
    try:
        yield ctl
    finally:
        ctl.close()


def find_run(run_id: str, *, settings: Settings | None = None) -> tuple[str, bool]:
    """The full id `run_id` names and whether it is the dry-run's: the run of exactly that id, else
    the run of that name, else the one run, in either store, whose id starts with it. An ambiguous
    prefix is refused with its matches; an unknown id with the known ids of both stores (one may be
    empty, the other not)."""
    settings = settings or load_settings()
    exact, matches, known = [], [], []
    for dry_run in (False, True):
        state_dir = settings.dry_run_dir() if dry_run else settings.state_dir
        if not (state_dir / "state.db").exists():
            continue  # never create a store only to look in it
        with Store.open(state_dir) as store:
            runs = store.run_names()
        label = " (dry-run)" if dry_run else ""
        exact += [(i, dry_run) for i, _ in runs if i == run_id]
        exact += [(i, dry_run) for i, name in runs if name == run_id]
        matches += [(i, dry_run) for i, _ in runs if i.startswith(run_id)]
        known += [(i, label) for i, _ in runs]
    if exact or len(matches) == 1:
        return (exact or matches)[0]  # an id is checked before it is a name: never both at once
    if matches:
        raise SpotrainError(
            f"run '{run_id}' is ambiguous: {len(matches)} runs start with it: "
            + ", ".join(i + (" (dry-run)" if d else "") for i, d in matches[:10]),
            "give more of the id",
        )
    if not known:
        raise SpotrainError(
            f"run '{run_id}' is unknown: there are no runs in {settings.state_dir} "
            f"(nor its dry-run's {settings.dry_run_dir()})",
            "start one with `spotrain launch`; SPOTRAIN_HOME chooses the state directory",
        )
    close = difflib.get_close_matches(run_id, [i for i, _ in known], n=1, cutoff=0.6)
    guess = f"; did you mean {close[0]}?" if close else ""
    raise SpotrainError(
        f"run '{run_id}' is unknown{guess}",
        "known runs: "
        + ", ".join(i + label for i, label in known[:10])
        + (" ..." if len(known) > 10 else ""),
    )


def known_runs(settings: Settings | None = None) -> list[tuple[str, bool]]:
    """Every run id and name of both stores and whether it is the dry-run's, newest first in each (for
    shell completion: the stores only, never a cloud, and no store created only to look in it)."""
    settings = settings or load_settings()
    known = []
    for dry_run in (False, True):
        state_dir = settings.state_dir_for(dry_run)
        if (state_dir / "state.db").exists():
            with Store.open(state_dir) as store:
                for run_id, name in store.run_names():
                    known += [(run_id, dry_run)] + ([(name, dry_run)] if name else [])
    return known


@contextlib.contextmanager
def controller_for_run(run_id: str, *, settings: Settings | None = None) -> Iterator[Controller]:
    """The controller whose store holds `run_id` (an exact id; see `find_run` for prefixes)."""
    settings = settings or load_settings()
    full, dry_run = find_run(run_id, settings=settings)
    with open_controller(dry_run=dry_run, settings=settings) as ctl:
        ctl.run = ctl.store.get_run(full)
        if settings.region is not None and not settings.allows(ctl.run.spec.regions):
            raise SpotrainError(
                f"run {full} was launched in {', '.join(ctl.run.spec.regions)}, not in --region {settings.region}",
                "leave --region out (a run's commands use the regions it was launched in), or name a run of it",
            )
        yield ctl


@dataclass(frozen=True)
class Swept:
    """What `down --all` did in one world (AWS, or the dry-run's cloud on this machine)."""

    world: str  # "aws" or "dry-run"
    cancelled: list[str]  # runs that had not ended
    removed: list[str]  # instances, security groups, key pairs ...


def down_all(settings: Settings | None = None) -> list[Swept]:
    """Every run's leftovers, in each world that has state here: the dry-run's on its own cloud (never
    AWS), AWS only when this machine has real runs (a machine that never launched one has nothing
    of ours there to know of). Runs that had not ended end CANCELLED, as `down RUN` does. With
    `settings.region` (--region): only the runs launched there, and the sweep of that region."""
    settings = settings or load_settings()
    done = []
    for dry_run in (True, False):
        state_dir = settings.state_dir_for(dry_run)
        if not (state_dir / "state.db").exists():
            continue
        with open_controller(dry_run=dry_run, settings=settings) as ctl:
            runs = [r for r in ctl.store.list_runs() if settings.allows(r.spec.regions)]
            if not dry_run and not runs:
                continue
            if not dry_run:  # the cloud is made for the regions the runs used (--region: that one)
                ctl.regions = [settings.region or r for run in runs for r in run.spec.regions]
                ctl.regions = sorted(set(ctl.regions))
            orch = ctl.orchestrator()
            cancelled = [run.run_id for run in runs if run.state not in TERMINAL]
            removed = [item for run_id in cancelled for item in orch.down(run_id)]
            result = ctl.cloud.sweep(None)
            removed += [*result.terminated, *result.deleted]
            done.append(Swept("dry-run" if dry_run else "aws", cancelled, sorted(set(removed))))
    return done


def newest_run(settings: Settings | None = None) -> str:
    """The id of the newest run in either store."""
    newest: list[RunRecord] = []
    for dry_run in (False, True):
        with open_controller(dry_run=dry_run, settings=settings) as ctl:
            newest += ctl.store.list_runs()[:1]
    if not newest:
        raise SpotrainError("there is no run yet", "start one with `spotrain launch` (or --dry-run)")
    return max(newest, key=lambda r: r.created_at).run_id


@dataclass(frozen=True)
class Downed:
    """What `down RUN` did: the run's state after it, and what it removed."""

    state: RunState
    removed: list[str]


def down_run(run_id: str, settings: Settings | None = None) -> Downed:
    """Terminate and remove everything the run owns; it ends CANCELLED (if it had not ended). A run
    already cancelled with nothing left is refused: there is nothing to take down."""
    with controller_for_run(run_id, settings=settings) as ctl:
        before = ctl.store.get_run(run_id)
        removed = ctl.orchestrator().down(run_id)
        after = ctl.store.get_run(run_id)
    if before.state == RunState.CANCELLED and not removed:  # a finished run's cleanup is not an error
        raise SpotrainError(
            f"run {run_id} is already down: it was cancelled ({after.end_reason}) and nothing of it is "
            "left in the cloud",
            f"see what it did with `spotrain status {run_id}` and `spotrain cost {run_id}`",
        )
    return Downed(after.state, removed)


def price_table(instance_type: str, *, dry_run: bool, settings: Settings | None = None):
    """`spotrain prices`: each zone's spot price now in the chosen region, from AWS with the chosen
    profile, or with `dry_run` from the dry-run's moto, seeded as `launch --dry-run` sees it."""
    from spotrain.cloud.aws.prices import quote

    settings = settings or load_settings()
    if not dry_run:
        return quote(instance_type=instance_type, region=settings.region, profile=settings.profile)
    with open_controller(dry_run=True, settings=settings) as ctl:
        return quote(instance_type=instance_type, region=settings.region, sess=ctl.cloud.session())
