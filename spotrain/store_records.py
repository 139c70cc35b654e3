"""The store's records, as `Store` returns them: a run (its spec typed, its plan), its attempts, its
events; and how a row of state.db becomes one, old rows included (schema 1 kept the plan's checkpoint
interval in the spec, schema 2 had no names).

A run's spec is validated (pydantic, `config.RunSpec`) only when `RunRecord.spec` is first read: `status`
and the bill need only the recipe, the instance type and the target, which `RunRecord` reads from the
stored spec itself, so that listing runs imports no pydantic (bench/status.py)."""

from __future__ import annotations

import difflib
import json
import re
import sqlite3
from dataclasses import dataclass, field, fields
from enum import Enum
from functools import cached_property
from typing import TYPE_CHECKING, Any

from spotrain import catalog
from spotrain.errors import SpotrainError
from spotrain.plan_record import PlanRecord

if TYPE_CHECKING:
    from spotrain.config import RunSpec


class RunState(str, Enum):
    REQUESTING = "requesting"
    PROVISIONING = "provisioning"
    TRAINING = "training"
    INTERRUPTED = "interrupted"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL = frozenset({RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED})


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    created_at: float
    updated_at: float
    state: RunState
    stored_spec: str = field(repr=False)  # the spec's JSON as launched, secret-looking env values "***"
    dry_run: bool
    end_reason: str  # why it reached a terminal state; "" before
    plan: PlanRecord | None = None  # None only for a run recorded without one (tests of the store)
    name: str | None = None  # the user's `--name`, unique in its store; None: known by its id only

    @cached_property
    def _stored(self) -> dict[str, Any]:
        return json.loads(self.stored_spec)

    @cached_property
    def spec(self) -> RunSpec:
        """The spec, typed (validated on first use: this imports pydantic)."""
        return _spec(self._stored)

    @property
    def recipe(self) -> str:
        """The spec's recipe, as stored (without validating the whole spec)."""
        return str(self._stored["recipe"])

    @property
    def instance(self) -> str:
        """The spec's instance type, as stored: the recipe's default was filled in when it was made."""
        return str(self._stored.get("instance") or "")

    @property
    def target_acc(self) -> float | None:
        """The spec's --target-acc, as stored; None: the recipe's."""
        value = self._stored.get("target_acc")
        return None if value is None else float(value)

    @property
    def label(self) -> str:
        """How a person knows the run: `name (id)`, or the id of a run without a name."""
        return f"{self.name} ({self.run_id})" if self.name else self.run_id


@dataclass(frozen=True)
class AttemptRecord:
    """One instance's life. Times are unix seconds; None until the moment has come."""

    run_id: str
    number: int  # 1-based within the run
    instance_id: str | None
    region: str
    zone: str
    instance_type: str
    spot_usd_per_hour: float | None  # the price when it was requested (the cost uses the history)
    requested_at: float
    started_at: float | None  # the instance entered `running` (billing starts)
    training_started_at: float | None  # the trainer's first step
    ended_at: float | None
    end_reason: str  # "spot-interruption", "user", "error", "finished"; "" while live
    exit_code: int | None
    resumed_from_step: int | None
    last_step: int | None
    events_offset: int = 0  # bytes of the attempt's events.jsonl already stored: where to follow from


@dataclass(frozen=True)
class EventRecord:
    id: int
    run_id: str
    attempt: int | None
    t: float
    kind: str
    data: dict[str, Any]
    source: str  # "controller" or "trainer"


NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,39}")


def check_run_name(name: str) -> str:
    """`name` if a run may be called so (`launch -n`): 1 to 40 letters, digits, '.', '_' or '-', the
    first a letter or a digit (so that it never reads as an option, a path or a glob)."""
    if not NAME.fullmatch(name):
        raise SpotrainError(
            f"run name {name!r} is not allowed: expected 1 to 40 letters, digits, '.', '_' or '-', "
            "starting with a letter or a digit",
            "pick a name such as resnet-lr-0.4",
        )
    return name


def unknown_run(run_id: str, ids: list[str], state_dir: object) -> SpotrainError:
    """The error for a run id that the store in `state_dir`, with runs `ids` (newest first), lacks."""
    if not ids:
        return SpotrainError(
            f"run '{run_id}' is unknown: there are no runs in {state_dir}",
            "start one with `spotrain launch`; SPOTRAIN_HOME chooses the state directory",
        )
    close = difflib.get_close_matches(run_id, ids, n=1, cutoff=0.6)
    guess = f"; did you mean {close[0]}?" if close else ""
    return SpotrainError(f"run '{run_id}' is unknown{guess}", f"newest runs: {', '.join(ids[:5])}")


ATTEMPT_FIELDS = [f.name for f in fields(AttemptRecord)]
UPDATABLE = set(ATTEMPT_FIELDS) - {"run_id", "number"}


def run_from_row(r: sqlite3.Row) -> RunRecord:
    return RunRecord(
        run_id=r["run_id"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
        state=RunState(r["state"]),
        stored_spec=r["spec"],
        dry_run=bool(r["dry_run"]),
        end_reason=r["end_reason"],
        plan=PlanRecord(**json.loads(r["plan"])) if r["plan"] else _legacy_plan(json.loads(r["spec"])),
        name=r["name"],
    )


def _spec(stored: dict[str, Any]) -> RunSpec:
    """The stored spec, typed. Keys RunSpec no longer has are dropped (a state.db from before the plan
    was stored kept `checkpoint_seconds` in it); a spec that no longer validates (a recipe renamed
    since) is read as stored, so that an old run can still be shown, costed and cleaned up."""
    from pydantic import ValidationError

    from spotrain.config import RunSpec

    known = {k: v for k, v in stored.items() if k in RunSpec.model_fields}
    try:
        return RunSpec.model_validate(known)
    except ValidationError:
        return RunSpec.model_construct(**known)


def _legacy_plan(stored: dict[str, Any]) -> PlanRecord | None:
    """The plan of a run recorded before plans were stored: its spec's `checkpoint_seconds`, and the
    catalog's figures for its instance type and recipe."""
    seconds = stored.get("checkpoint_seconds")
    if seconds is None or stored.get("instance") not in catalog.INSTANCE_TYPES:
        return None
    itype = catalog.instance_type(stored["instance"])
    root_gb = catalog.recipe(stored["recipe"]).root_volume_gb
    return PlanRecord(itype.name, itype.gpus, root_gb, float(seconds))


def attempt_from_row(r: sqlite3.Row) -> AttemptRecord:
    return AttemptRecord(**{k: r[k] for k in ATTEMPT_FIELDS})


def event_from_row(r: sqlite3.Row) -> EventRecord:
    return EventRecord(
        id=r["id"],
        run_id=r["run_id"],
        attempt=r["attempt"],
        t=r["t"],
        kind=r["kind"],
        data=json.loads(r["data"]),
        source=r["source"],
    )


@dataclass(frozen=True)
class NodeAttemptRecord:
    """One node of a multi-node attempt (`--nodes N`): its instance's life. Node 0 is also the
    attempt's own instance (AttemptRecord), so a single-node attempt has none of these."""

    run_id: str
    attempt: int  # the attempt's number
    node_rank: int  # 0..N-1; 0 holds the rendezvous endpoint and mirrors the checkpoints
    instance_id: str | None
    zone: str
    private_ip: str | None
    started_at: float | None  # the instance entered `running` (its billing starts)
    ended_at: float | None
    end_reason: str = ""  # as AttemptRecord's; "" while live
    exit_code: int | None = None  # its trainer's


NODE_FIELDS = [f.name for f in fields(NodeAttemptRecord)]
NODE_UPDATABLE = set(NODE_FIELDS) - {"run_id", "attempt", "node_rank"}


def node_from_row(r: sqlite3.Row) -> NodeAttemptRecord:
    return NodeAttemptRecord(**{k: r[k] for k in NODE_FIELDS})
