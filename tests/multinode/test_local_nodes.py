"""The dry-run's multi-node attempt (issue 16, step 2's cloud half): each node of the one launch is a
machine of its own (its directory, HOME, boot and IMDS), each with its private address in the VPC."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from spotrain.cloud import EndKind
from spotrain.cloud.aws.attempt import AttemptRequest
from spotrain.cloud.aws.instances import LaunchSpec, region_quotes
from spotrain.cloud.local import LocalCloud
from spotrain.plan import order_zones

G4 = "g4dn.xlarge"


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[LocalCloud]:
    c = LocalCloud(tmp_path / "dry-run", boot_delay_s=0.1, notice_grace_s=5.0, imds_poll_s=0.05)
    yield c
    c.close()


def launch_nodes(cloud: LocalCloud, nodes: int):
    spec = LaunchSpec(run_id="run1", attempt_id="run1-1", owner="tester", instance_type=G4, root_gb=120)
    quotes = region_quotes(cloud.session(), instance_type=G4, regions=["us-east-1"])
    req = AttemptRequest(
        spec=replace(spec, nodes=nodes),
        regions=["us-east-1"],
        state_dir=cloud.state_dir,
        order=order_zones(quotes, instance_type=G4, demote=[]),
    )
    return cloud.start_attempt(req)


def test_each_node_of_a_dry_run_attempt_is_a_machine_with_its_private_address(cloud: LocalCloud) -> None:
    inst = launch_nodes(cloud, 2).instance
    assert len(inst.node_ids) == 2
    statuses = [cloud.wait_running(inst.region, node, deadline_s=30) for node in inst.node_ids]
    assert [s.end for s in statuses] == [EndKind.RUNNING, EndKind.RUNNING]
    assert {s.zone for s in statuses} == {inst.zone}  # one zone, as the launch asked
    ips = [s.private_ip for s in statuses]
    assert all(ips) and len(set(ips)) == 2
    dirs = [cloud.instance_dir(node) for node in inst.node_ids]
    assert all(d.is_dir() for d in dirs) and dirs[0] != dirs[1]  # each its own HOME
    cloud.terminate(inst.region, list(inst.node_ids))
    assert {cloud.describe(inst.region, node).end for node in inst.node_ids} == {EndKind.USER}
