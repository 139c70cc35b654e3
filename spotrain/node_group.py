"""A multi-node attempt's nodes (`--nodes N`, issue 16), mixed into the Orchestrator: each node
recorded when the launch returns (its instance, zone and private address: store_nodes.py), and, when
the attempt ends, every node ended with it: a node EC2 reclaims (the one its notice came to) is left
to EC2, as a single node in its first hour is (attempt_end.py: AWS bills it nothing), and the
survivors are terminated at once, each with a `reclaim` event naming its node.

Node 0 is the attempt's own instance (AttemptRecord.instance_id), so a single-node attempt has no
node rows and takes none of these paths."""

from __future__ import annotations

import contextlib
import time

from spotrain.attempt_end import FREE_HOUR_S, RECLAIM_WAIT_S
from spotrain.cloud import EndKind
from spotrain.errors import SpotrainError


class NodeGroup:
    """The Orchestrator's node half (it holds store, cloud, clock, sleep and poll_s, and _event)."""

    def _record_nodes(self, run_id: str, number: int, inst) -> None:
        """Every node of the launched attempt `number` (a LaunchedInstance), node 0 first; nothing for
        a single node (its attempt's row is all there is of it)."""
        if len(inst.node_ids) < 2:
            return
        for rank, node_id in enumerate(inst.node_ids):
            status = self.cloud.describe(inst.region, node_id)
            self.store.add_node(
                run_id,
                number,
                rank,
                instance_id=node_id,
                zone=status.zone or inst.zone,
                private_ip=status.private_ip,
                started_at=None,  # until it runs, each node's billing is the attempt's
            )

    def _finish_nodes(self, run, attempt, reason: str, exit_code: int | None) -> bool:
        """End every node of a multi-node attempt with it (False: a single-node attempt, not ended
        here). Interrupted: nodes EC2 reclaims within the wait are left to it, the others terminated."""
        nodes = self.store.nodes(run.run_id, attempt.number)
        if not nodes:
            return False
        interrupted = reason == EndKind.SPOT_INTERRUPTION.value
        by_ec2 = self._reclaimed_nodes(run, attempt, nodes) if interrupted else set()
        survivors = [n.instance_id for n in nodes if n.node_rank not in by_ec2 and n.instance_id]
        if survivors:
            with contextlib.suppress(SpotrainError):
                self.cloud.terminate(attempt.region, survivors)
        now = time.time()
        for n in nodes:
            if n.ended_at is None:
                code = exit_code if n.node_rank == 0 else None
                self.store.update_node(
                    run.run_id, attempt.number, n.node_rank, ended_at=now, end_reason=reason, exit_code=code
                )
            if interrupted:
                by = "ec2" if n.node_rank in by_ec2 else "spotrain"
                self._event(run.run_id, "reclaim", attempt=attempt.number, by=by, node=n.node_rank)
        return True

    def _reclaimed_nodes(self, run, attempt, nodes) -> set[int]:
        """The ranks EC2 reclaimed: waited for (as attempt_end._reclaimed_by waits for one node) while
        none is and the attempt is in its first hour, unless --terminate-on-notice; once one is, the
        others are the survivors."""
        if run.spec.terminate_on_notice:
            return set()
        age = time.time() - (attempt.started_at or attempt.requested_at)
        end, pause = self.clock() + max(min(RECLAIM_WAIT_S, FREE_HOUR_S - age), 0.0), min(0.05, self.poll_s)
        while True:
            ends = {n.node_rank: self.cloud.describe(attempt.region, n.instance_id).end for n in nodes}
            taken = {rank for rank, end in ends.items() if end == EndKind.SPOT_INTERRUPTION}
            if taken or self.clock() >= end or all(e != EndKind.RUNNING for e in ends.values()):
                return taken
            self.sleep(min(pause, max(end - self.clock(), 0.0)))
            pause = min(self.poll_s, pause * 2)
