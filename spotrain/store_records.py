"""The store's records, as `Store` returns them: a run (its spec typed, its plan), its attempts, its
events; and how a row of state.db becomes one, old rows included (schema 1 kept the plan's checkpoint
interval in the spec)."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, fields
from enum import Enum
from typing import Any

from pydantic import ValidationError

from spotrain import catalog
from spotrain.config import PlanRecord, RunSpec


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
    spec: RunSpec  # as launched, secret-looking env values replaced by "***"
    dry_run: bool
    end_reason: str  # why it reached a terminal state; "" before
    plan: PlanRecord | None = None  # None only for a run recorded without one (tests of the store)


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


ATTEMPT_FIELDS = [f.name for f in fields(AttemptRecord)]
UPDATABLE = set(ATTEMPT_FIELDS) - {"run_id", "number"}


def run_from_row(r: sqlite3.Row) -> RunRecord:
    stored = json.loads(r["spec"])
    return RunRecord(
        run_id=r["run_id"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
        state=RunState(r["state"]),
        spec=_spec(stored),
        dry_run=bool(r["dry_run"]),
        end_reason=r["end_reason"],
        plan=PlanRecord(**json.loads(r["plan"])) if r["plan"] else _legacy_plan(stored),
    )


def _spec(stored: dict[str, Any]) -> RunSpec:
    """The stored spec, typed. Keys RunSpec no longer has are dropped (a state.db from before the plan
    was stored kept `checkpoint_seconds` in it); a spec that no longer validates (a recipe renamed
    since) is read as stored, so that an old run can still be shown, costed and cleaned up."""
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
