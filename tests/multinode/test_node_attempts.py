"""Node-attempts (issue 16, step 1): the store keeps each node of a multi-node attempt, and the bill
prices each node's own life by cost.py's rules, so a 2-node run of two attempts has four node-attempts
in `cost` and `cost --json`; a single-node run's bill has no node in it, as before."""

from __future__ import annotations

import io
import sqlite3

import pytest
from rich.console import Console

from spotrain import store_schema
from spotrain.cost import PriceSample, run_bill
from spotrain.render import cost_table
from spotrain.report.summary import bill_json
from spotrain.store import Store

G4 = "g4dn.xlarge"
RATE = 0.36  # us-east-1a, $/h, from t=0


@pytest.fixture
def store(tmp_path) -> Store:
    with Store.open(tmp_path) as s:
        yield s


def _run(store: Store) -> str:
    run_id = store.new_run_id("digits")
    store.create_run(run_id, {"recipe": "digits", "instance": G4, "nodes": 2}, dry_run=True)
    store.add_price_samples("us-east-1", [PriceSample("us-east-1a", G4, 0, RATE)])
    return run_id


def _attempt(store: Store, run_id: str, nodes: list[tuple[float, float]], *, first: str = "i-a") -> int:
    """One attempt whose node r lived nodes[r] = (start, end); node 0 is the attempt's own instance."""
    (start0, end0) = nodes[0]
    number = store.add_attempt(
        run_id,
        instance_id=first,
        region="us-east-1",
        zone="us-east-1a",
        instance_type=G4,
        spot_usd_per_hour=RATE,
        requested_at=start0 - 10,
    ).number
    store.update_attempt(run_id, number, started_at=start0)
    for rank, (start, _) in enumerate(nodes):
        store.add_node(
            run_id,
            number,
            rank,
            instance_id=first if rank == 0 else f"{first}{rank}",
            zone="us-east-1a",
            private_ip=f"10.0.0.{10 + rank}",
            started_at=start,
        )
    for rank, (_, end) in enumerate(nodes):
        store.update_node(run_id, number, rank, ended_at=end, end_reason="spot-interruption")
    store.update_attempt(run_id, number, ended_at=end0, end_reason="spot-interruption")
    return number


def test_schema_4_holds_node_attempts_and_records_them_by_attempt_and_rank(store: Store) -> None:
    conn = sqlite3.connect(store.path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(store_schema.MIGRATIONS) >= 4
    run_id = _run(store)
    _attempt(store, run_id, [(1000, 1600), (1005, 1700)])
    got = store.nodes(run_id)
    assert [(n.attempt, n.node_rank, n.instance_id, n.private_ip) for n in got] == [
        (1, 0, "i-a", "10.0.0.10"),
        (1, 1, "i-a1", "10.0.0.11"),
    ]
    assert (got[1].started_at, got[1].ended_at, got[1].end_reason) == (1005, 1700, "spot-interruption")
    # recorded again (a restarted controller adopting the same instances): one row, its end kept
    again = store.add_node(
        run_id, 1, 1, instance_id="i-a1", zone="us-east-1a", private_ip="10.0.0.11", started_at=1005
    )
    assert again.ended_at == 1700 and len(store.nodes(run_id, 1)) == 2
    with pytest.raises(LookupError):
        store.add_node(run_id, 9, 0, instance_id="i-x", zone="us-east-1a", private_ip=None, started_at=1.0)
    with pytest.raises(TypeError, match="node_rank"):
        store.update_node(run_id, 1, 1, node_rank=3)


def test_two_attempts_of_two_nodes_are_four_node_attempts_each_billed_for_its_own_life(store: Store) -> None:
    run_id = _run(store)
    _attempt(store, run_id, [(1000, 1600), (1000, 1630)])  # 600 s and 630 s
    _attempt(store, run_id, [(2000, 2030), (2000, 2400)], first="i-b")  # 30 s (billed 60) and 400 s
    # EC2 reclaimed attempt 1's node 1 only (the notice was there): its first hour is free
    store.add_event(run_id, "reclaim", {"by": "ec2", "node": 1}, attempt=1)
    store.add_event(run_id, "reclaim", {"by": "spotrain"}, attempt=1)
    bill = run_bill(store, run_id)
    costs = bill.cost.attempts
    assert [(c.attempt_id.rsplit("-", 1)[1], c.node, c.billed_s) for c in costs] == [
        ("1.0", 0, 600),
        ("1.1", 1, 630),
        ("2.0", 0, 60),
        ("2.1", 1, 400),
    ]
    assert [c.free_hour for c in costs] == [False, True, False, False]
    assert bill.cost.spot_usd == pytest.approx(RATE * (600 + 60 + 400) / 3600, rel=1e-12)
    assert bill.cost.gpu_hours == pytest.approx((600 + 630 + 60 + 400) / 3600, rel=1e-12)
    assert [(r.number, r.instance_id) for r in bill.usage.records] == [
        (1, "i-a"),
        (1, "i-a1"),
        (2, "i-b"),
        (2, "i-b1"),
    ]

    console = Console(file=io.StringIO(), width=100)
    console.print(cost_table(bill))
    rows = [line.split()[0] for line in console.file.getvalue().splitlines() if line.strip()]
    assert [r for r in rows if r[:1].isdigit()] == ["1.0", "1.1", "2.0", "2.1"]

    entries = bill_json(bill)["attempts"]
    assert [(e["number"], e["node"], e["instance_id"], e["billed_s"]) for e in entries] == [
        (1, 0, "i-a", 600),
        (1, 1, "i-a1", 630),
        (2, 0, "i-b", 60),
        (2, 1, "i-b1", 400),
    ]


def test_a_single_node_run_has_no_node_in_its_bill(store: Store) -> None:
    run_id = _run(store)
    number = store.add_attempt(
        run_id,
        instance_id="i-1",
        region="us-east-1",
        zone="us-east-1a",
        instance_type=G4,
        spot_usd_per_hour=RATE,
        requested_at=990,
    ).number
    store.update_attempt(run_id, number, started_at=1000, ended_at=1600, end_reason="finished")
    bill = run_bill(store, run_id)
    assert [(c.attempt_id, c.node, c.billed_s) for c in bill.cost.attempts] == [(f"{run_id}-1", None, 600)]
    assert "node" not in bill_json(bill)["attempts"][0]
