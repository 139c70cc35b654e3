"""A detached run's launch template and Auto Scaling group on moto: what the template asks of every
instance (checked on the template's data: moto's group instances carry neither the spot lifecycle nor
the profile, ../shared/notes/unattended-moto.md), the group's shape, a replacement when a member is
terminated, and nothing of the run left after the sweep."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import boto3
import pytest

from spotrain.cloud import ImageChoice
from spotrain.cloud.aws import autoscaling, network, sweep
from spotrain.cloud.aws.instances import LaunchSpec, RegionResources

R = "us-east-1"
IMAGE = ImageChoice("ami-12c6146b", "a DLAMI", "override", "the test's image")


def made(
    sess: boto3.Session, home: Path, run_id: str = "r1"
) -> tuple[autoscaling.GroupSpec, RegionResources]:
    key = network.ensure_key_pair(sess, region=R, owner="alice", state_dir=home)
    group = network.ensure_security_group(
        sess, region=R, run_id=run_id, owner="alice", ssh_cidr="203.0.113.7"
    )
    ec2 = sess.client("ec2", region_name=R)
    subnets = network.default_subnets(ec2, group.vpc_id)
    zones = [f"{R}c", f"{R}a"]  # the plan's order, not the alphabet's
    res = RegionResources(R, IMAGE, key.name, group.group_id, subnets)
    snap = ec2.create_snapshot(VolumeId=ec2.create_volume(AvailabilityZone=f"{R}a", Size=20)["VolumeId"])
    launch = LaunchSpec(
        run_id=run_id,
        attempt_id="detached",
        owner="alice",
        instance_type="g4dn.xlarge",
        root_gb=100,
        data_snapshot_id=snap["SnapshotId"],
        instance_profile="arn:aws:iam::123456789012:instance-profile/spotrain/spotrain-instance",
        max_price=0.42,
        user_data="#!/bin/bash\necho boot\n",
    )
    return autoscaling.GroupSpec(launch, {z: subnets[z] for z in zones}), res


def template(sess: boto3.Session, run_id: str = "r1") -> dict[str, Any]:
    ec2 = sess.client("ec2", region_name=R)
    versions = ec2.describe_launch_template_versions(LaunchTemplateName=autoscaling.group_name(run_id))
    return versions["LaunchTemplateVersions"][0]["LaunchTemplateData"]


def test_the_template_asks_imdsv2_encrypted_volumes_the_profile_and_the_run_group(
    aws: boto3.Session, isolated_env: Path
) -> None:
    spec, res = made(aws, isolated_env)
    autoscaling.create_group(aws, spec, res)
    data = template(aws)
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    disks = {d["DeviceName"]: d["Ebs"] for d in data["BlockDeviceMappings"]}
    assert all(d["Encrypted"] for d in disks.values()) and len(disks) == 2
    assert disks["/dev/sdf"]["SnapshotId"] == spec.launch.data_snapshot_id
    assert data["IamInstanceProfile"] == {"Arn": spec.launch.instance_profile}
    assert data["SecurityGroupIds"] == [res.security_group_id]
    assert "InstanceMarketOptions" not in data  # the group's distribution makes it spot (see the module)
    assert base64.b64decode(data["UserData"]).decode().endswith("echo boot\n")
    inst_tags = next(s["Tags"] for s in data["TagSpecifications"] if s["ResourceType"] == "instance")
    assert {"Key": "spotrain:run", "Value": "r1"} in inst_tags


def test_the_group_is_one_spot_instance_over_the_allowed_zones_with_capacity_rebalancing(
    aws: boto3.Session, isolated_env: Path
) -> None:
    spec, res = made(aws, isolated_env)
    state = autoscaling.create_group(aws, spec, res)
    assert (state.min_size, state.max_size, state.desired) == (0, 1, 1)
    assert state.subnets == tuple(spec.subnets.values())  # one a zone, in the plan's order
    assert state.capacity_rebalance
    assert len(state.instances) == 1
    asg = aws.client("autoscaling", region_name=R)
    g = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[state.name])["AutoScalingGroups"][0]
    dist = g["MixedInstancesPolicy"]["InstancesDistribution"]
    assert dist["OnDemandBaseCapacity"] == 0 and dist["OnDemandPercentageAboveBaseCapacity"] == 0
    assert dist["SpotAllocationStrategy"] == "price-capacity-optimized"
    assert dist["SpotMaxPrice"] == "0.42000"
    assert {t["Key"]: t["Value"] for t in g["Tags"]} == {"spotrain:run": "r1", "spotrain:owner": "alice"}


def test_a_terminated_member_is_replaced_by_the_group(aws: boto3.Session, isolated_env: Path) -> None:
    spec, res = made(aws, isolated_env)
    first = autoscaling.create_group(aws, spec, res).instances[0][0]
    aws.client("ec2", region_name=R).terminate_instances(InstanceIds=[first])
    now = autoscaling.describe_group(aws, R, "r1")
    assert now is not None and [i for i, _, _ in now.instances] != [first] and len(now.instances) == 1


@pytest.mark.filterwarnings("ignore:Tried to parse AWS")
def test_the_sweep_leaves_no_group_template_instance_or_security_group_of_the_run(
    aws: boto3.Session, isolated_env: Path
) -> None:
    spec, res = made(aws, isolated_env)
    autoscaling.create_group(aws, spec, res)
    other, other_res = made(aws, isolated_env, run_id="r2")
    autoscaling.create_group(aws, other, other_res)
    left = sweep.find_leftovers(aws, regions=[R], run_id="r1")
    assert {lo.kind for lo in left} == {"auto-scaling-group", "launch-template", "instance", "security-group"}
    result = sweep.sweep(aws, left, deadline_s=30)
    assert result.failed == []
    assert sweep.find_leftovers(aws, regions=[R], run_id="r1") == []
    assert autoscaling.describe_group(aws, R, "r1") is None
    assert autoscaling.describe_group(aws, R, "r2") is not None  # another run's group is not touched
