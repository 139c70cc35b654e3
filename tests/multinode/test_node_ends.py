"""A multi-node attempt's nodes in the orchestrator (issue 16, step 2): each recorded when the launch
returns, with its private address; when the attempt ends for a notice, the node EC2 reclaims is left
to EC2 (its first hour free) and the survivors are terminated at once; the bill follows each node."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from spotrain.cloud import EndKind
from spotrain.cloud.local import LocalCloud
from spotrain.cost import run_bill
from spotrain.orchestrator import Orchestrator
from spotrain.store import Store

from .test_local_nodes import G4, launch_nodes


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[LocalCloud]:
    c = LocalCloud(tmp_path / "dry-run", boot_delay_s=0.1, notice_grace_s=0.3, imds_poll_s=0.05)
    yield c
    c.close()


def launched(cloud: LocalCloud, tmp_path: Path):
    store = Store.open(tmp_path / "state")
    run = store.create_run("run1", {"recipe": "digits", "instance": G4, "nodes": 2}, dry_run=True)
    inst = launch_nodes(cloud, 2).instance
    for node in inst.node_ids:
        assert cloud.wait_running(inst.region, node, deadline_s=30).end is EndKind.RUNNING
    attempt = store.add_attempt(
        run.run_id,
        instance_id=inst.instance_id,
        region=inst.region,
        zone=inst.zone,
        instance_type=inst.instance_type,
        spot_usd_per_hour=inst.spot_usd_per_hour,
        requested_at=time.time(),
    )
    orch = Orchestrator(store, cloud, tmp_path / "state", poll_s=0.05)
    orch._record_nodes(run.run_id, attempt.number, inst)
    return (
        store,
        orch,
        store.get_run(run.run_id),
        store.update_attempt(run.run_id, 1, started_at=time.time()),
        inst,
    )


def test_each_node_is_recorded_and_on_a_notice_ec2_takes_its_node_and_spotrain_the_others(
    cloud: LocalCloud, tmp_path: Path
) -> None:
    store, orch, run, attempt, inst = launched(cloud, tmp_path)
    nodes = store.nodes(run.run_id, 1)
    assert [(n.node_rank, n.instance_id) for n in nodes] == list(enumerate(inst.node_ids))
    assert [n.private_ip for n in nodes] == [cloud.describe(inst.region, i).private_ip for i in inst.node_ids]
    assert all(n.private_ip for n in nodes) and {n.zone for n in nodes} == {inst.zone}

    cloud.inject_interruption(inst.node_ids[1])  # the notice on node 1 only: EC2 reclaims it
    orch._finish_attempt(run, attempt, "spot-interruption", 75)
    ends = [cloud.describe(inst.region, i).end for i in inst.node_ids]
    assert ends == [EndKind.USER, EndKind.SPOT_INTERRUPTION]  # node 0 terminated by spotrain
    reclaims = [(e.data["node"], e.data["by"]) for e in store.events(run.run_id, kinds=["reclaim"])]
    assert sorted(reclaims) == [(0, "spotrain"), (1, "ec2")]
    ended = store.nodes(run.run_id, 1)
    assert all(n.ended_at and n.end_reason == "spot-interruption" for n in ended)
    assert [n.exit_code for n in ended] == [75, None]
    bill = run_bill(store, run.run_id)
    assert [(c.node, c.free_hour) for c in bill.cost.attempts] == [(0, False), (1, True)]


def test_a_finished_attempt_terminates_every_node_without_a_reclaim(
    cloud: LocalCloud, tmp_path: Path
) -> None:
    store, orch, run, attempt, inst = launched(cloud, tmp_path)
    orch._finish_attempt(run, attempt, "finished", 0)
    assert {cloud.describe(inst.region, i).end for i in inst.node_ids} == {EndKind.USER}
    assert store.events(run.run_id, kinds=["reclaim"]) == []
    assert {n.end_reason for n in store.nodes(run.run_id, 1)} == {"finished"}


def test_a_restarted_controller_ends_a_multi_node_attempts_live_nodes_and_launches_anew(
    cloud: LocalCloud, tmp_path: Path
) -> None:
    store, orch, run, attempt, inst = launched(cloud, tmp_path)
    assert orch._adopt(run) is False  # nothing adopted: the request step launches N new nodes
    assert {cloud.describe(inst.region, i).end for i in inst.node_ids} == {EndKind.USER}
    assert store.live_attempt(run.run_id) is None and store.attempts(run.run_id)[0].end_reason == "lost"
    assert {n.end_reason for n in store.nodes(run.run_id, 1)} == {"lost"}


def test_a_controller_killed_while_starting_the_nodes_launches_n_new_ones(
    cloud: LocalCloud, tmp_path: Path
) -> None:
    from spotrain.store import RunState

    store, orch, run, attempt, inst = launched(cloud, tmp_path)
    store.set_state(run.run_id, RunState.PROVISIONING, reason="launched")
    store.add_event(run.run_id, "trainer_start", {"node": 0, "pid": 1}, attempt=1)  # then it died
    orch._provision(store.get_run(run.run_id))
    assert store.get_run(run.run_id).state is RunState.REQUESTING
    assert {cloud.describe(inst.region, i).end for i in inst.node_ids} == {EndKind.USER}
    assert store.live_attempt(run.run_id) is None and {n.end_reason for n in store.nodes(run.run_id, 1)} == {
        "lost"
    }
