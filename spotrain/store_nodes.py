"""The store's node-attempts: the nodes of a multi-node attempt, one row a node (schema 4), kept
beside `store.py`'s API as a part of `Store` (it inherits this)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Any

from spotrain.store_records import NODE_UPDATABLE, AttemptRecord, NodeAttemptRecord, node_from_row


class NodeAttempts:
    """`Store`'s methods on node-attempts; `_tx` and `_read` are Store's."""

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:  # pragma: no cover (Store's)
        raise NotImplementedError

    def _read(self, sql: str, args: Iterable[Any] = ()) -> list[sqlite3.Row]:  # pragma: no cover
        raise NotImplementedError

    def add_node(
        self,
        run_id: str,
        attempt: int,
        node_rank: int,
        *,
        instance_id: str | None,
        zone: str,
        private_ip: str | None,
        started_at: float | None,
    ) -> NodeAttemptRecord:
        """Record node `node_rank` of attempt `attempt`. Recording it again (a restarted controller
        adopting the same instances) sets the same values and keeps its end."""
        with self._tx() as c:
            if (
                c.execute(
                    "SELECT 1 FROM attempts WHERE run_id = ? AND number = ?", (run_id, attempt)
                ).fetchone()
                is None
            ):
                raise LookupError(f"run {run_id} has no attempt {attempt}")
            c.execute(
                "INSERT INTO node_attempts (run_id, attempt, node_rank, instance_id, zone, private_ip,"
                " started_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, attempt, node_rank)"
                " DO UPDATE SET instance_id = excluded.instance_id, zone = excluded.zone,"
                " private_ip = excluded.private_ip, started_at = excluded.started_at",
                (run_id, attempt, node_rank, instance_id, zone, private_ip, started_at),
            )
        return self._node(run_id, attempt, node_rank)

    def update_node(self, run_id: str, attempt: int, node_rank: int, **changes: Any) -> NodeAttemptRecord:
        """Set some of a node-attempt's fields (never its run, attempt or rank)."""
        bad = set(changes) - NODE_UPDATABLE
        if bad:
            raise TypeError(f"update_node: unknown fields {sorted(bad)}; allowed: {sorted(NODE_UPDATABLE)}")
        if changes:
            cols = ", ".join(f"{k} = ?" for k in changes)
            with self._tx() as c:
                cur = c.execute(
                    f"UPDATE node_attempts SET {cols} WHERE run_id = ? AND attempt = ? AND node_rank = ?",
                    (*changes.values(), run_id, attempt, node_rank),
                )
                if cur.rowcount == 0:
                    raise LookupError(f"run {run_id} has no node {node_rank} in attempt {attempt}")
        return self._node(run_id, attempt, node_rank)

    def nodes(self, run_id: str, attempt: int | None = None) -> list[NodeAttemptRecord]:
        """The run's node-attempts (of one attempt, when given), by attempt then rank."""
        sql, args = "SELECT * FROM node_attempts WHERE run_id = ?", [run_id]
        if attempt is not None:
            sql += " AND attempt = ?"
            args.append(attempt)
        return [node_from_row(r) for r in self._read(sql + " ORDER BY attempt, node_rank", args)]

    def _node(self, run_id: str, attempt: int, node_rank: int) -> NodeAttemptRecord:
        return next(n for n in self.nodes(run_id, attempt) if n.node_rank == node_rank)


def node_lives(
    attempt: AttemptRecord, nodes: Iterable[NodeAttemptRecord]
) -> list[tuple[int | None, AttemptRecord]]:
    """The attempt as each of its nodes lived, for the bill: `[(None, attempt)]` for a single-node
    attempt (no node rows); else one `(rank, record)` a node, node 0 the attempt's own record, each
    other node the attempt with its own instance, zone, start, end, end reason and exit code (a time
    it has not recorded is the attempt's)."""
    mine = sorted((n for n in nodes if n.attempt == attempt.number), key=lambda n: n.node_rank)
    if not mine:
        return [(None, attempt)]
    lives: list[tuple[int | None, AttemptRecord]] = [(0, attempt)]
    for n in mine:
        if n.node_rank == 0:
            continue
        lives.append(
            (
                n.node_rank,
                replace(
                    attempt,
                    instance_id=n.instance_id,
                    zone=n.zone,
                    started_at=n.started_at or attempt.started_at,
                    ended_at=n.ended_at or attempt.ended_at,
                    end_reason=n.end_reason or attempt.end_reason,
                    exit_code=n.exit_code if n.exit_code is not None else attempt.exit_code,
                ),
            )
        )
    return lives
