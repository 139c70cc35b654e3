"""The controller's state: one SQLite file, `state.db` (records: store_records.py, schema: store_schema.py).

Tables: runs, attempts, node-attempts (store_nodes.py), events, prices. WAL lets `status` read while a
controller writes; each state change is one transaction; `PRAGMA user_version` is the schema version,
raised one migration at a time. A file not spotrain's, or newer spotrain's, is refused, never written.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spotrain import secret_env
from spotrain.cost import PriceSample
from spotrain.errors import SpotrainError
from spotrain.plan_record import PlanRecord
from spotrain.store_nodes import NodeAttempts
from spotrain.store_records import (
    TERMINAL,
    UPDATABLE,
    AttemptRecord,
    EventRecord,
    RunRecord,
    RunState,
    attempt_from_row,
    check_run_name,
    event_from_row,
    run_from_row,
    unknown_run,
)
from spotrain.store_schema import connect, dump, migrate, sqlite_errors

if TYPE_CHECKING:
    from spotrain.config import RunSpec

DB_NAME = "state.db"
BUSY_TIMEOUT_S = 10.0


class Store(NodeAttempts):
    """The state database. Open with `Store.open(state_dir)`; safe to share between threads."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        self._lock = threading.RLock()

    @classmethod
    def open(cls, state_dir: Path, *, busy_timeout_s: float = BUSY_TIMEOUT_S) -> Store:
        """Open (creating it, mode 0700/0600) `state_dir/state.db` and bring its schema up to date."""
        path = Path(state_dir) / DB_NAME
        conn = connect(Path(state_dir), path, busy_timeout_s)
        try:
            migrate(conn, path)
        except BaseException:
            conn.close()
            raise
        return cls(conn, path)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at its start so that two writers queue instead of deadlocking."""
        with self._lock, sqlite_errors(self.path):
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _read(self, sql: str, args: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock, sqlite_errors(self.path):
            return self._conn.execute(sql, tuple(args)).fetchall()

    # ---- runs ----

    def new_run_id(self, recipe: str) -> str:
        """A fresh id such as `digits-20261129-2145-a1b2`: recipe, local time, 4 random hex digits."""
        import secrets  # only a launch makes an id

        while True:
            run_id = f"{recipe}-{time.strftime('%Y%m%d-%H%M')}-{secrets.token_hex(2)}"
            if not self._read("SELECT 1 FROM runs WHERE run_id = ?", [run_id]):
                return run_id

    def create_run(
        self,
        run_id: str,
        spec: RunSpec | Mapping[str, Any],
        dry_run: bool,
        *,
        plan: PlanRecord | None = None,
        name: str | None = None,
    ) -> RunRecord:
        """A new run in REQUESTING, with its plan, its name (unique in the store, see `check_name`)
        and its creation as the first state event."""
        now = time.time()
        if not isinstance(spec, Mapping):
            spec = spec.model_dump(mode="json")
        env = spec.get("env") if isinstance(spec.get("env"), Mapping) else None
        stored = {**spec, "env": secret_env.redact(env)} if env else spec  # secrets never in the database
        planned = None if plan is None else dump(asdict(plan))
        with self._tx() as c:
            if c.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone():
                raise SpotrainError(f"run '{run_id}' already exists", "pick another id, or resume that run")
            if name is not None:
                self._check_name(c, name)
            # The secrets are on disk before the run exists: a run is never without its values
            secret_env.save(self.path.parent, run_id, spec.get("env") or {})
            try:
                c.execute(
                    "INSERT INTO runs (run_id, created_at, updated_at, state, spec, dry_run, plan, name)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (run_id, now, now, RunState.REQUESTING.value, dump(stored), int(dry_run), planned, name),
                )
                _insert_event(
                    c, run_id, None, now, "state", {"from": None, "to": "requesting", "reason": "created"}
                )
            except BaseException:
                secret_env.remove(self.path.parent, run_id)
                raise
        return self.get_run(run_id)

    def run_env(self, run: RunRecord) -> dict[str, str]:
        """The environment the run's trainer is given: its spec's, secret values read back from the
        0600 file beside the database (see secret_env)."""
        return secret_env.run_env(self.path.parent, run.run_id, run.spec.env)

    def get_run(self, run_id: str) -> RunRecord:
        rows = self._read("SELECT * FROM runs WHERE run_id = ?", [run_id])
        if not rows:
            raise self._unknown_run(run_id)
        return run_from_row(rows[0])

    def list_runs(self) -> list[RunRecord]:
        """Every run, newest first."""
        return [
            run_from_row(r) for r in self._read("SELECT * FROM runs ORDER BY created_at DESC, rowid DESC")
        ]

    def check_name(self, name: str) -> None:
        """Refuse (SpotrainError) a malformed name, or one a run here has as name or id (ended or not)."""
        with self._lock, sqlite_errors(self.path):
            self._check_name(self._conn, name)

    def _check_name(self, c: sqlite3.Connection, name: str) -> None:
        check_run_name(name)
        row = c.execute("SELECT run_id FROM runs WHERE name = ? OR run_id = ?", (name, name)).fetchone()
        if row is not None:
            raise SpotrainError(
                f"run name '{name}' is taken by run {row['run_id']} in {self.path.parent}",
                f"pick another name, or see that run with `spotrain status {name}`",
            )

    def run_names(self) -> list[tuple[str, str | None]]:
        """Every run's (id, name), newest first: what a run is found by (workspace.find_run)."""
        rows = self._read("SELECT run_id, name FROM runs ORDER BY created_at DESC, rowid DESC")
        return [(r["run_id"], r["name"]) for r in rows]

    def set_state(
        self, run_id: str, state: RunState, *, reason: str = "", data: Mapping[str, Any] | None = None
    ) -> bool:
        """Move the run to `state`, writing the `state` event in the same transaction; True if it moved.

        Setting the state it already has is a no-op (no event), so a restarted controller may repeat it.
        An ended run stays ended: a controller still watching a run that `spotrain down` cancelled
        meanwhile (another process) cannot overwrite that (False). Entering a terminal state records
        `reason` as the run's end reason.
        """
        state = RunState(state)
        now = time.time()
        with self._tx() as c:
            row = c.execute("SELECT state FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                raise self._unknown_run(run_id)
            if row["state"] == state.value or RunState(row["state"]) in TERMINAL:
                moved = False
            else:
                end_reason = reason if state in TERMINAL else ""
                c.execute(
                    "UPDATE runs SET state = ?, updated_at = ?, end_reason = ? WHERE run_id = ?",
                    (state.value, now, end_reason, run_id),
                )
                payload = {**(data or {}), "from": row["state"], "to": state.value, "reason": reason}
                _insert_event(c, run_id, None, now, "state", payload)
                moved = True
        if state in TERMINAL:  # an ended run is never started again: its secrets have no more use
            secret_env.remove(self.path.parent, run_id)
        return moved

    def _unknown_run(self, run_id: str) -> SpotrainError:
        ids = [r["run_id"] for r in self._read("SELECT run_id FROM runs ORDER BY created_at DESC LIMIT 200")]
        return unknown_run(run_id, ids, self.path.parent)

    # ---- attempts ----

    def add_attempt(
        self,
        run_id: str,
        *,
        instance_id: str | None,
        region: str,
        zone: str,
        instance_type: str,
        spot_usd_per_hour: float | None,
        requested_at: float,
    ) -> AttemptRecord:
        """The run's next attempt (numbered from 1). Refused while another attempt has not ended."""
        with self._tx() as c:
            if c.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is None:
                raise self._unknown_run(run_id)
            live = c.execute(
                "SELECT number FROM attempts WHERE run_id = ? AND ended_at IS NULL", (run_id,)
            ).fetchone()
            if live is not None:
                raise RuntimeError(f"run {run_id} still has live attempt {live[0]}: end it first")
            (last,) = c.execute("SELECT MAX(number) FROM attempts WHERE run_id = ?", (run_id,)).fetchone()
            number = (last or 0) + 1
            c.execute(
                "INSERT INTO attempts (run_id, number, instance_id, region, zone, instance_type,"
                " spot_usd_per_hour, requested_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, number, instance_id, region, zone, instance_type, spot_usd_per_hour, requested_at),
            )
        return self._attempt(run_id, number)

    def update_attempt(self, run_id: str, number: int, **changes: Any) -> AttemptRecord:
        """Set some of an attempt's fields (only AttemptRecord's own, never run_id or number)."""
        bad = set(changes) - UPDATABLE
        if bad:
            raise TypeError(f"update_attempt: unknown fields {sorted(bad)}; allowed: {sorted(UPDATABLE)}")
        if changes:
            cols = ", ".join(f"{k} = ?" for k in changes)
            with self._tx() as c:
                cur = c.execute(
                    f"UPDATE attempts SET {cols} WHERE run_id = ? AND number = ?",
                    (*changes.values(), run_id, number),
                )
                if cur.rowcount == 0:
                    raise LookupError(f"run {run_id} has no attempt {number}")
        return self._attempt(run_id, number)

    def attempts(self, run_id: str) -> list[AttemptRecord]:
        """The run's attempts, first first."""
        rows = self._read("SELECT * FROM attempts WHERE run_id = ? ORDER BY number", [run_id])
        return [attempt_from_row(r) for r in rows]

    def live_attempt(self, run_id: str) -> AttemptRecord | None:
        """The attempt that has not ended, if any (the database allows at most one)."""
        rows = self._read("SELECT * FROM attempts WHERE run_id = ? AND ended_at IS NULL", [run_id])
        return attempt_from_row(rows[0]) if rows else None

    def _attempt(self, run_id: str, number: int) -> AttemptRecord:
        rows = self._read("SELECT * FROM attempts WHERE run_id = ? AND number = ?", [run_id, number])
        if not rows:
            raise LookupError(f"run {run_id} has no attempt {number}")
        return attempt_from_row(rows[0])

    # ---- events ----

    def add_event(
        self,
        run_id: str,
        kind: str,
        data: Mapping[str, Any],
        *,
        attempt: int | None = None,
        t: float | None = None,
        source: str = "controller",
    ) -> EventRecord:
        """One event, in its own transaction."""
        with self._tx() as c:
            event_id = _insert_event(c, run_id, attempt, time.time() if t is None else t, kind, data, source)
        return self._event(event_id)

    def add_trainer_events(
        self, run_id: str, attempt: int, events: Iterable[Mapping[str, Any]], *, offset: int | None = None
    ) -> int:
        """Store lines of the trainer's events.jsonl, each at most once; returns how many were new.

        An event is known by its content (a hash of its JSON), so feeding the same lines again after a
        reconnect, or from the S3 copy of the log, stores nothing twice. Lines without a `kind` or a
        numeric `t` are skipped. `offset` (bytes of events.jsonl read so far) is kept on the attempt in
        the same transaction, as `AttemptRecord.events_offset`, for a restarted follower.
        """
        import hashlib  # here, not at the top: `status` never writes and hashlib costs it 4 ms

        stored = 0
        with self._tx() as c:
            for ev in events:
                t, kind = ev.get("t"), ev.get("kind")
                if not isinstance(kind, str) or not isinstance(t, int | float) or isinstance(t, bool):
                    continue
                data = {k: v for k, v in ev.items() if k not in ("t", "kind")}
                key = hashlib.sha256(dump(ev).encode()).hexdigest()
                cur = c.execute(
                    "INSERT OR IGNORE INTO events (run_id, attempt, t, kind, data, source, dedup)"
                    " VALUES (?, ?, ?, ?, ?, 'trainer', ?)",
                    (run_id, attempt, float(t), kind, dump(data), key),
                )
                stored += cur.rowcount
            if offset is not None:
                c.execute(
                    "UPDATE attempts SET events_offset = MAX(events_offset, ?) WHERE run_id = ? AND number = ?",
                    (offset, run_id, attempt),
                )
        return stored

    def events(
        self,
        run_id: str,
        kinds: Iterable[str] | None = None,
        attempt: int | None = None,
        *,
        after_id: int = 0,
        newest: bool = False,
    ) -> list[EventRecord]:
        """The run's events in time order (ties in the order stored), filtered by kind and attempt.

        `after_id`: only events stored after that one, for a reader that polls. `newest`: only the
        last one (`status` wants a run's last step, not its thousands of steps).
        """
        sql, args = "SELECT * FROM events WHERE run_id = ? AND id > ?", [run_id, after_id]
        if kinds is not None:
            kinds = list(kinds)
            sql += f" AND kind IN ({', '.join('?' * len(kinds))})"
            args += kinds
        if attempt is not None:
            sql += " AND attempt = ?"
            args.append(attempt)
        order = " ORDER BY t DESC, id DESC LIMIT 1" if newest else " ORDER BY t, id"
        return [event_from_row(r) for r in self._read(sql + order, args)]

    def _event(self, event_id: int) -> EventRecord:
        return event_from_row(self._read("SELECT * FROM events WHERE id = ?", [event_id])[0])

    # ---- spot prices ----

    def add_price_samples(self, region: str, samples: Iterable[PriceSample]) -> int:
        """Keep spot price samples; one already stored is ignored. Returns how many were new."""
        rows = [(region, s.instance_type, s.zone, float(s.t), float(s.usd_per_hour)) for s in samples]
        with self._tx() as c:
            before = c.total_changes
            c.executemany("INSERT OR IGNORE INTO price_samples VALUES (?, ?, ?, ?, ?)", rows)
            return c.total_changes - before

    def price_samples(
        self,
        *,
        region: str,
        instance_type: str,
        zones: Iterable[str] | None = None,
        start: float,
        end: float,
    ) -> list[PriceSample]:
        """Samples from `start` to `end` (inclusive) per zone, plus each zone's last one before `start`:
        the price in force at `start`. Sorted by zone, then time."""
        sql = """SELECT zone, instance_type, t, usd_per_hour FROM price_samples p
            WHERE region = ? AND instance_type = ? AND t <= ?
            AND t >= COALESCE((SELECT MAX(t) FROM price_samples q WHERE q.region = p.region
                AND q.instance_type = p.instance_type AND q.zone = p.zone AND q.t <= ?), ?)"""
        args: list[Any] = [region, instance_type, end, start, start]
        if zones is not None:
            zones = list(zones)
            sql += f" AND zone IN ({', '.join('?' * len(zones))})"
            args += zones
        rows = self._read(sql + " ORDER BY zone, t", args)
        return [PriceSample(r["zone"], r["instance_type"], r["t"], r["usd_per_hour"]) for r in rows]


def _insert_event(
    c: sqlite3.Connection,
    run_id: str,
    attempt: int | None,
    t: float,
    kind: str,
    data: Mapping[str, Any],
    source: str = "controller",
) -> int:
    cur = c.execute(
        "INSERT INTO events (run_id, attempt, t, kind, data, source) VALUES (?, ?, ?, ?, ?, ?)",
        (run_id, attempt, t, kind, dump(dict(data)), source),
    )
    return int(cur.lastrowid or 0)
