"""The state database's file: its schema migrations, opening it safely, and SQLite's errors in words.

`store.py` holds the API; this holds what must be right once: the file and directory modes, WAL, the
busy timeout, `PRAGMA user_version` raised one migration (one transaction) at a time, and refusing,
without writing a byte, a file that is damaged, not spotrain's, or from a newer spotrain.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from spotrain.errors import SpotrainError

# Each entry takes the schema from version i to i + 1, in one transaction. Never edit a released
# entry: append a new one.
MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE runs (
            run_id TEXT PRIMARY KEY,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            state TEXT NOT NULL,
            spec TEXT NOT NULL,
            dry_run INTEGER NOT NULL,
            end_reason TEXT NOT NULL DEFAULT '')""",
        """CREATE TABLE attempts (
            run_id TEXT NOT NULL REFERENCES runs(run_id),
            number INTEGER NOT NULL,
            instance_id TEXT,
            region TEXT NOT NULL,
            zone TEXT NOT NULL,
            instance_type TEXT NOT NULL,
            spot_usd_per_hour REAL,
            requested_at REAL NOT NULL,
            started_at REAL,
            training_started_at REAL,
            ended_at REAL,
            end_reason TEXT NOT NULL DEFAULT '',
            exit_code INTEGER,
            resumed_from_step INTEGER,
            last_step INTEGER,
            events_offset INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (run_id, number))""",
        # The DESIGN's rule "never two instances for one run", held by the database itself.
        "CREATE UNIQUE INDEX attempts_one_live ON attempts(run_id) WHERE ended_at IS NULL",
        """CREATE TABLE events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id TEXT NOT NULL REFERENCES runs(run_id),
            attempt INTEGER,
            t REAL NOT NULL,
            kind TEXT NOT NULL,
            data TEXT NOT NULL,
            source TEXT NOT NULL,
            dedup TEXT)""",
        "CREATE INDEX events_run ON events(run_id, t)",
        "CREATE UNIQUE INDEX events_dedup ON events(run_id, attempt, dedup) WHERE dedup IS NOT NULL",
        """CREATE TABLE price_samples (
            region TEXT NOT NULL,
            instance_type TEXT NOT NULL,
            zone TEXT NOT NULL,
            t REAL NOT NULL,
            usd_per_hour REAL NOT NULL,
            PRIMARY KEY (region, instance_type, zone, t)) WITHOUT ROWID""",
    ],
    # 2: the run's plan (store.PlanRecord as JSON). NULL in the runs of version 1, whose spec kept the
    # checkpoint interval as `checkpoint_seconds`: store_records._legacy_plan reads those.
    ["ALTER TABLE runs ADD COLUMN plan TEXT"],
    # 3: the run's name (`launch -n/--name`), NULL for the runs before it. Unique among all the store's
    # runs, ended ones included: `status NAME` of a finished run names that run and no other. And the
    # events by kind: the bill and `status` read a run's evals, checkpoints and last step, never
    # scanning its thousands of step events for them.
    [
        "ALTER TABLE runs ADD COLUMN name TEXT",
        "CREATE UNIQUE INDEX runs_name ON runs(name) WHERE name IS NOT NULL",
        "CREATE INDEX events_run_kind ON events(run_id, kind, t)",
    ],
    # 4: the nodes of a multi-node attempt (`--nodes N`), one row a node: its instance, zone and
    # private address (node 0's is the rendezvous endpoint), its own start and end, so that each node
    # is billed for its own life. Node 0 is also the attempt's row (its instance, start and end); a
    # single-node attempt has no rows here.
    [
        """CREATE TABLE node_attempts (
            run_id TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            node_rank INTEGER NOT NULL,
            instance_id TEXT,
            zone TEXT NOT NULL,
            private_ip TEXT,
            started_at REAL,
            ended_at REAL,
            end_reason TEXT NOT NULL DEFAULT '',
            exit_code INTEGER,
            PRIMARY KEY (run_id, attempt, node_rank),
            FOREIGN KEY (run_id, attempt) REFERENCES attempts(run_id, number))""",
    ],
]


def connect(state_dir: Path, path: Path, busy_timeout_s: float) -> sqlite3.Connection:
    """A connection to `path` in WAL mode, creating the directory (0700) and the file (0600) if needed."""
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not path.exists():
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    except OSError as e:
        blocker = next((p for p in (state_dir, *state_dir.parents) if p.exists()), state_dir)
        raise SpotrainError(
            f"cannot create spotrain's state in {state_dir}: {e.strerror} ({e.filename})",
            f"make {blocker} writable (chmod u+rwx {blocker}) or set SPOTRAIN_HOME to a writable directory",
        ) from None
    for p in (state_dir, path):
        if not os.access(p, os.R_OK | os.W_OK):
            raise SpotrainError(
                f"spotrain's state {'directory' if p == state_dir else 'database'} {p} is read-only",
                f"make it writable (chmod u+rw{'x' if p == state_dir else ''} {p}) "
                "or set SPOTRAIN_HOME to a writable directory",
            )
    conn = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    try:
        with sqlite_errors(path):
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA journal_mode = WAL")
    except BaseException:
        conn.close()
        raise
    return conn


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Apply the migrations this file lacks, each in its own transaction with its version bump."""
    head = len(MIGRATIONS)
    with sqlite_errors(path):
        while True:
            conn.execute("BEGIN IMMEDIATE")  # another process may be migrating the same file
            try:
                (version,) = conn.execute("PRAGMA user_version").fetchone()
                _check_version(conn, path, version, head)
                if version == head:
                    conn.execute("COMMIT")
                    return
                for statement in MIGRATIONS[version]:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {version + 1}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise


def _check_version(conn: sqlite3.Connection, path: Path, version: int, head: int) -> None:
    if version > head:
        raise SpotrainError(
            f"{path} was written by a newer spotrain (schema {version}; this one knows up to {head}); "
            "it was not changed",
            "upgrade spotrain (pip install -U spotrain), or set SPOTRAIN_HOME to another directory",
        )
    if version == 0 and conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
        raise SpotrainError(
            f"{path} is an SQLite database but not spotrain's; it was not changed",
            f"move it aside (mv {path} {path}.other) or set SPOTRAIN_HOME to another directory",
        )


@contextlib.contextmanager
def sqlite_errors(path: Path) -> Iterator[None]:
    """SQLite's errors that a user can fix, as SpotrainError; anything else stays a bug."""
    try:
        yield
    except sqlite3.DatabaseError as e:
        text = str(e).lower()
        if "not a database" in text or "malformed" in text or "encrypted" in text:
            raise SpotrainError(
                f"{path} is damaged or not a spotrain database ({e}); it was not changed",
                f"move it aside (mv {path} {path}.damaged) and run again to start a new one",
            ) from None
        if "locked" in text or "busy" in text:
            raise SpotrainError(
                f"{path} is locked by another spotrain process", "wait for it to finish, then try again"
            ) from None
        if "readonly" in text or "read-only" in text or "unable to open" in text or "disk" in text:
            raise SpotrainError(
                f"cannot write {path}: {e}",
                f"make {path.parent} writable (chmod u+rwx) and free some disk space, or set SPOTRAIN_HOME",
            ) from None
        raise


def dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
