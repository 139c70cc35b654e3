"""A multi-node launch on moto (issue 16's lower half): N nodes in one zone, in the run's cluster
placement group, in a security group open to its own members; all of them or none, a partial launch
terminated and the next zone tried; the quota and the plan count N nodes."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import boto3
import pytest
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ec2.models import ec2_backends
from moto.ec2.models.instances import StateReason

from spotrain import catalog, plan
from spotrain.cloud import NoCapacity
from spotrain.cloud.aws import sweep
from spotrain.cloud.aws.attempt import start_attempt
from spotrain.errors import SpotrainError

from .aws_fakes import P3, fail_zones, quotas
from .test_launch import CAPACITY, R, ec2, live, request
from .test_launch import world as launch_world  # noqa: F401, F811  (a fixture: used below)


@pytest.fixture
def world(launch_world: boto3.Session) -> boto3.Session:  # noqa: F811
    """test_launch's world: prices in us-east-1 (1a 7.34, 1c 9.50, 1b 11.00), a DLAMI, quota 256."""
    return launch_world


def two_nodes(home, **kw: Any):
    req = request(home, **kw)
    return replace(req, spec=replace(req.spec, nodes=2))


def described(sess: boto3.Session, ids: list[str]) -> list[dict[str, Any]]:
    found = ec2(sess).describe_instances(InstanceIds=ids)["Reservations"]
    return [i for r in found for i in r["Instances"]]


def capacity_for_one_in(session: boto3.Session, zone: str) -> list[list[str]]:
    """In `zone`, EC2 takes a two-node request and then cannot fill the second spot instance: it ends
    at once with an insufficient-capacity reason (what a partial launch looks like). Returns the ids
    each RunInstances call gave, in order."""
    calls: list[list[str]] = []

    def after_call(parsed: dict[str, Any], **_: Any) -> None:
        got = parsed.get("Instances", [])
        calls.append([i["InstanceId"] for i in got])
        if got and got[0]["Placement"]["AvailabilityZone"] == zone and len(got) > 1:
            inst = ec2_backends[DEFAULT_ACCOUNT_ID][R].get_instance(got[1]["InstanceId"])
            inst.terminate()
            inst.state_reason = StateReason(
                "Server.InsufficientInstanceCapacity: Insufficient capacity (injected)",
                "Server.InsufficientInstanceCapacity",
            )

    session.events.register("after-call.ec2.RunInstances", after_call)
    return calls


def test_two_nodes_land_together_in_one_zone_in_the_runs_placement_group(world, isolated_env) -> None:
    started = start_attempt(world, two_nodes(isolated_env))
    launched = started.instance
    assert len(launched.node_ids) == 2 and launched.zone == "us-east-1a"  # the cheapest zone
    nodes = described(world, list(launched.node_ids))
    assert {i["Placement"]["AvailabilityZone"] for i in nodes} == {"us-east-1a"}
    assert all(i["InstanceLifecycle"] == "spot" and i["InstanceType"] == P3 for i in nodes)
    assert {t["Value"] for i in nodes for t in i["Tags"] if t["Key"] == "spotrain:run"} == {"r1"}
    (pg,) = ec2(world).describe_placement_groups(Filters=[{"Name": "tag:spotrain:run", "Values": ["r1"]}])[
        "PlacementGroups"
    ]
    assert pg["Strategy"] == "cluster" and started.resources[R].placement_group == pg["GroupName"]
    (sg,) = ec2(world).describe_security_groups(GroupIds=[started.security_group.group_id])["SecurityGroups"]
    rules = {p["IpProtocol"]: p for p in sg["IpPermissions"]}
    assert set(rules) == {"tcp", "-1"}  # SSH from the caller, everything from the group's own members
    assert [r["CidrIp"] for r in rules["tcp"]["IpRanges"]] == ["203.0.113.7/32"]
    assert [g["GroupId"] for g in rules["-1"]["UserIdGroupPairs"]] == [sg["GroupId"]]
    assert not rules["-1"]["IpRanges"]  # nobody outside the group


def test_one_node_keeps_no_placement_group_and_ssh_only(world, isolated_env) -> None:
    started = start_attempt(world, request(isolated_env))
    assert started.instance.node_ids == (started.instance.instance_id,)
    assert ec2(world).describe_placement_groups()["PlacementGroups"] == []
    (sg,) = ec2(world).describe_security_groups(GroupIds=[started.security_group.group_id])["SecurityGroups"]
    assert [p["IpProtocol"] for p in sg["IpPermissions"]] == ["tcp"]


def test_a_partial_launch_is_terminated_and_both_nodes_land_in_the_next_zone(world, isolated_env) -> None:
    calls = capacity_for_one_in(world, "us-east-1a")
    started = start_attempt(world, two_nodes(isolated_env))
    first, second = calls  # 1a took the request and filled one node; 1c (the next cheapest) both
    assert started.instance.zone == "us-east-1c" and list(started.instance.node_ids) == second
    states = {i["InstanceId"]: i["State"]["Name"] for i in described(world, first)}
    assert set(states.values()) <= {"shutting-down", "terminated"}, states  # nothing left in 1a
    in_1a = [i for i in described(world, live(world)) if i["Placement"]["AvailabilityZone"] == "us-east-1a"]
    assert in_1a == []
    (failure,) = started.instance.tried
    assert (failure.zone, failure.code) == ("us-east-1a", "PartialLaunch")
    assert "1 of 2 nodes started" in failure.message


def test_capacity_refused_for_two_everywhere_leaves_nothing(world, isolated_env) -> None:
    calls = capacity_for_one_in(world, "us-east-1a")
    fail_zones(world, {"us-east-1b": CAPACITY, "us-east-1c": CAPACITY})
    with pytest.raises(NoCapacity) as err:  # may pass with time: --auto-resume waits and tries again
        start_attempt(world, two_nodes(isolated_env))
    assert "PartialLaunch" in err.value.message and CAPACITY in err.value.message
    assert [len(c) for c in calls] == [2, 0, 0] and live(world) == []  # 1b and 1c refused both
    assert sweep.find_leftovers(world, regions=[R]) == []  # the group and the placement group too


def test_the_quota_check_counts_every_node(world, isolated_env) -> None:
    asked = fail_zones(world, {})
    # 96 vCPUs hold one p3.16xlarge (64) but not two: refused before any launch call, naming both.
    with quotas({"L-7212CCBC": 96}), pytest.raises(SpotrainError) as err:
        start_attempt(world, two_nodes(isolated_env))
    assert asked == []
    assert f"2 x {P3} needs 128" in err.value.message
    assert "--desired-value 128" in err.value.hint
    with quotas({"L-7212CCBC": 128}):
        assert len(start_attempt(world, two_nodes(isolated_env)).instance.node_ids) == 2


def test_the_plan_counts_every_node() -> None:
    recipe, itype = catalog.recipe("imagenet"), catalog.instance_type(P3)
    one = plan.estimate(recipe, itype, spot_usd_per_hour=7.34, nodes=1)
    four = plan.estimate(recipe, itype, spot_usd_per_hour=7.34, nodes=4)
    assert four.images_per_s == pytest.approx(4 * one.images_per_s)
    assert four.hours == pytest.approx(one.hours / 4)
    assert four.usd_per_hour == pytest.approx(4 * 7.34) and one.usd_per_hour == pytest.approx(7.34)
    assert four.spot_usd == pytest.approx(four.hours * 4 * 7.34)
    assert four.on_demand_usd == pytest.approx(four.hours * 4 * itype.on_demand_usd_per_hour)
