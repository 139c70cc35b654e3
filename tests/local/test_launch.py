"""Launching through LocalCloud: the real cloud/aws code path over HTTP to the moto server, failover to
another zone after an interruption, reconcile by tag, terminate, sweep, and a clean close."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import boto3
import pytest

from spotrain.cloud import EndKind
from spotrain.cloud.local import LocalCloud
from spotrain.errors import SpotrainError

from .local_helpers import launch


def test_start_attempt_launches_on_the_moto_server(cloud: LocalCloud) -> None:
    started = launch(cloud)
    inst = started.instance
    assert inst.instance_type == "p3.16xlarge" and inst.zone.startswith("us-east-1")
    assert started.image.source == "ssm" and "CUDA 12" in started.image.reason  # V100: a CUDA 12.x DLAMI
    assert started.security_group.ssh_cidr == "127.0.0.1/32"  # no call to checkip from the dry-run
    # A plain client to the server's URL sees the instance: the launch went over HTTP, not in-process.
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=cloud.endpoint)
    got = ec2.describe_instances(InstanceIds=[inst.instance_id])["Reservations"][0]["Instances"][0]
    assert got["Placement"]["AvailabilityZone"] == inst.zone and got["InstanceLifecycle"] == "spot"
    assert cloud.instance_dir(inst.instance_id).is_dir()
    t0 = time.monotonic()
    status = cloud.wait_running(inst.region, inst.instance_id, deadline_s=30)
    assert status.state == "running" and status.end is EndKind.RUNNING
    assert time.monotonic() - t0 >= cloud.boot_delay_s  # the simulated boot
    assert status.tags["spotrain:run"] == "run1"
    digits = launch(cloud, "run2", instance_type="g4dn.xlarge")  # the digits recipe's default type
    assert digits.instance.instance_type == "g4dn.xlarge" and "CUDA 13" in digits.image.reason


def test_the_next_attempt_lands_in_another_zone(cloud: LocalCloud) -> None:
    first = launch(cloud)
    cloud.terminate(first.instance.region, [first.instance.instance_id])
    second = launch(cloud, attempt="a2", demote=[first.instance.zone])
    assert second.instance.zone != first.instance.zone
    assert second.instance.spot_usd_per_hour is not None


def test_find_instances_terminate_and_sweep(cloud: LocalCloud) -> None:
    a = launch(cloud, "run1")
    b = launch(cloud, "run2", regions=["us-west-2"])
    assert [s.instance_id for s in cloud.find_instances("run1")] == [a.instance.instance_id]
    assert [s.region for s in cloud.find_instances("run2")] == ["us-west-2"]
    cloud.terminate(a.instance.region, [a.instance.instance_id])
    assert cloud.describe(a.instance.region, a.instance.instance_id).end is EndKind.USER
    assert cloud.find_instances("run1") == []
    result = cloud.sweep(None)
    assert b.instance.instance_id in result.terminated
    assert cloud.find_instances("run2") == []
    for region in ("us-east-1", "us-west-2"):
        ec2 = cloud.session().client("ec2", region_name=region)
        tagged = [{"Name": "tag-key", "Values": ["spotrain:owner"]}]
        assert ec2.describe_security_groups(Filters=tagged)["SecurityGroups"] == []
        assert ec2.describe_key_pairs(Filters=tagged)["KeyPairs"] == []
    assert cloud.sweep(None).terminated == []  # nothing left


def test_close_leaves_no_threads_or_servers(tmp_path: Path) -> None:
    before = set(threading.enumerate())
    cloud = LocalCloud(tmp_path / "dry-run", boot_delay_s=0.0, notice_grace_s=30)
    started = launch(cloud)
    instance_id = started.instance.instance_id
    imds_port = int(cloud.instance_env(instance_id)["SPOTRAIN_IMDS_URL"].rsplit(":", 1)[1])
    moto_port = int(cloud.endpoint.rsplit(":", 1)[1])
    cloud.inject_interruption(instance_id)  # a reclaim thread waiting on the notice's grace
    cloud.schedule_interruption(launch(cloud, "run2").instance.instance_id, "50%", "runs/x/events.jsonl")
    cloud.close()
    assert set(threading.enumerate()) <= before
    for port in (imds_port, moto_port):
        with socket.socket() as s, pytest.raises(OSError):
            s.connect(("127.0.0.1", port))


def test_bad_schedule_and_unknown_instance(cloud: LocalCloud) -> None:
    started = launch(cloud)
    with pytest.raises(SpotrainError, match="neither a step, a share of the schedule nor seconds"):
        cloud.schedule_interruption(started.instance.instance_id, "half", "events.jsonl")
    with pytest.raises(SpotrainError, match="not running"):
        cloud.inject_interruption("i-0000000000000000")


def test_both_clouds_implement_the_interface(cloud: LocalCloud) -> None:
    from spotrain.cloud.aws.cloud import AwsCloud
    from spotrain.cloud.base import Cloud

    assert isinstance(cloud, Cloud)
    assert isinstance(AwsCloud(regions=["us-east-1"], bucket="b"), Cloud)
