"""A multi-node attempt's nodes (`--nodes N`, issue 16), mixed into the Orchestrator: each node
recorded when the launch returns (its instance, zone and private address: store_nodes.py), and, when
the attempt ends, every node ended with it: a node EC2 reclaims (the one its notice came to) is left
to EC2, as a single node in its first hour is (attempt_end.py: AWS bills it nothing), and the
survivors are terminated at once, each with a `reclaim` event naming its node.

Node 0 is the attempt's own instance (AttemptRecord.instance_id), so a single-node attempt has no
node rows and takes none of these paths."""

from __future__ import annotations

import contextlib
import socket
import time

from spotrain.attempt_end import FREE_HOUR_S, RECLAIM_WAIT_S
from spotrain.cloud import EndKind
from spotrain.contract import WORKDIR, NodeRole, run_paths
from spotrain.errors import SpotrainError
from spotrain.layout import node_log_path
from spotrain.remote import ConnectionLost, Unreachable, connect, follow, process_status, start_trainer, sync
from spotrain.store import RunState

NODE_EXIT_WAIT_S = 60.0  # a node's trainer ends within its collective timeout (45 s) of node 0's
RENDEZVOUS_PORT = 29400  # torchrun's own default, on node 0's private address (the SG admits members)


class NodeGroup:
    """The Orchestrator's node half (it holds store, cloud, clock, sleep and poll_s, and _event)."""

    def _provision_nodes(self, run, attempt) -> None:
        """PROVISIONING a multi-node attempt: each node running, ready and synced, its trainer started
        with node 0's address as the rendezvous (the dry-run's: 127.0.0.1 and a free port), node R's
        injected notice (`AT@R`) on node R only. A node that ended meanwhile ends the attempt."""
        try:
            self._provision_each(run, attempt)
        except (ConnectionLost, Unreachable) as err:
            return self._lost_contact(run, attempt, err)
        except SpotrainError as err:  # AuthFailed, the bootstrap's failure marker, a failed start...
            return self._remote_failed(run, attempt, err)

    def _provision_each(self, run, attempt) -> None:
        nodes = self.store.nodes(run.run_id, attempt.number)
        if self.store.events(run.run_id, kinds=["trainer_start"], attempt=attempt.number):
            # a controller killed while it started the nodes: their rendezvous cannot be joined again
            live = [self.cloud.describe(attempt.region, n.instance_id) for n in nodes]
            self._drop_nodes(run, [s for s in live if s.end == EndKind.RUNNING])
            return self._transition(run.run_id, RunState.REQUESTING, "a restart: N new nodes")
        statuses = []
        for n in nodes:
            status = self.cloud.wait_running(attempt.region, n.instance_id, deadline_s=900)
            if status.end != EndKind.RUNNING:
                why = f"node {n.node_rank} ({n.instance_id}) ended while booting: {status.reason_code}"
                return self._ended(run, attempt, status.end, why)
            if n.started_at is None:
                self.store.update_node(run.run_id, attempt.number, n.node_rank, started_at=time.time())
            statuses.append(status)
        if attempt.started_at is None:
            self.store.update_attempt(
                run.run_id, attempt.number, started_at=nodes[0].started_at or time.time()
            )
        if self.cloud.name == "dry-run":
            endpoint = f"127.0.0.1:{_free_port()}"  # every node is this machine: a port of this attempt's
        else:
            endpoint = f"{statuses[0].private_ip}:{RENDEZVOUS_PORT}"
        for n, status in zip(nodes, statuses, strict=True):
            role = NodeRole(n.node_rank, len(nodes), endpoint, f"{run.run_id}-{attempt.number}")
            self._start_node(run, attempt, n, status, role)
        self._transition(run.run_id, RunState.TRAINING, f"trainer started on {len(nodes)} nodes")

    def _start_node(self, run, attempt, node, status, role: NodeRole) -> None:
        run_dir, bundle = run_paths(self.cloud.workdir(node.instance_id), run.run_id)
        transport = connect(self.cloud.target(status, ssh=self.ssh))
        try:
            ready = self.cloud.wait_ready(transport, node.instance_id, deadline_s=900.0)
            sync(transport, self._sources(run), bundle, filtered=(WORKDIR,))
            command = self._trainer_command(
                run, attempt, run_dir, ready, instance_id=node.instance_id, node=role
            )
            env = self._trainer_env(run, attempt, instance_id=node.instance_id, node=node.node_rank)
            at = self._injection(run, attempt, node.node_rank)
            started = start_trainer(transport, command, run_dir=run_dir, cwd=bundle, env=env)
        finally:
            transport.close()
        self._event(
            run.run_id,
            "trainer_start",
            attempt=attempt.number,
            node=node.node_rank,
            pid=started.pid,
            warm=False,
        )
        if at:  # node 0 writes the events: the notice is posted on node R when node 0 says it stopped
            events = (
                self.cloud.instance_dir(attempt.instance_id) / run_dir.removeprefix("~/") / "events.jsonl"
            )
            self.cloud.schedule_interruption(node.instance_id, at, events)
            self._event(run.run_id, "inject", attempt=attempt.number, at=at, node=node.node_rank)

    def _node_gone(self, run, attempt):
        """The first node of a multi-node attempt whose instance has ended, as (rank, status); None
        when every node still runs (or the attempt has one node)."""
        for n in self.store.nodes(run.run_id, attempt.number):
            status = self.cloud.describe(attempt.region, n.instance_id)
            if status.end != EndKind.RUNNING:
                return n.node_rank, status
        return None

    def _open_peers(self, run, attempt) -> dict:
        """A transport to each node but node 0, opened while they run (an instance EC2 reclaimed answers
        no more: its log is read through the transport already open), for `_keep_node_logs`."""
        peers = {}
        for n in self.store.nodes(run.run_id, attempt.number)[1:]:
            with contextlib.suppress(Exception):  # a node gone already: its log is lost
                status = self.cloud.describe(attempt.region, n.instance_id)
                peers[n] = connect(self.cloud.target(status, ssh=self.ssh))
        return peers

    def _close_peers(self, peers: dict) -> None:
        for transport in peers.values():
            with contextlib.suppress(Exception):
                transport.close()

    def _keep_node_logs(self, run, attempt, peers: dict) -> None:
        """Every node's train.log but node 0's (the attempt's own, attempt_end._keep_log), kept in the
        state directory beside it once its trainer has ended: `logs RUN --node R`."""
        for n, transport in peers.items():
            path = node_log_path(self.state_dir, run.run_id, attempt.number, n.node_rank)
            with contextlib.suppress(Exception):  # a node that stopped answering: its log is lost
                run_dir = run_paths(self.cloud.workdir(n.instance_id), run.run_id)[0]
                end = time.monotonic() + NODE_EXIT_WAIT_S  # it stops with node 0: its last lines
                while process_status(transport, run_dir).running and time.monotonic() < end:
                    time.sleep(0.1)
                lines = [line.text for line in follow(transport, f"{run_dir}/train.log", stop=lambda: True)]
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")

    def _drop_nodes(self, run, live) -> bool:
        """A restarted controller finds a multi-node run's instances live: they are not adopted (their
        trainers' rendezvous is this attempt's, which a new start would not join); each is terminated,
        the attempt and its nodes end `lost`, and the run launches N new nodes (False: none adopted)."""
        by_region: dict[str, list[str]] = {}
        for status in live:
            by_region.setdefault(status.region, []).append(status.instance_id)
        for region, ids in by_region.items():
            with contextlib.suppress(SpotrainError):
                self.cloud.terminate(region, ids)
        known, now = self.store.live_attempt(run.run_id), time.time()
        if known is not None:
            self.store.update_attempt(run.run_id, known.number, ended_at=now, end_reason="lost")
            for n in self.store.nodes(run.run_id, known.number):
                if n.ended_at is None:
                    self.store.update_node(
                        run.run_id, known.number, n.node_rank, ended_at=now, end_reason="lost"
                    )
        self._event(
            run.run_id, "warning", message=f"{len(live)} live nodes not adopted: ended, N new launched"
        )
        return False

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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
