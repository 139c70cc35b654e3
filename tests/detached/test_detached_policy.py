"""A detached run's calls, recorded under botocore's hooks and proved against infra/'s policies: the
controller's (launch template, group, describe, `down`'s sweep) by controller-policy.json, the
supervisor's on the instance (ledger, end, desired 0, leaving the group) by the instance role; and every
action infra/controller-policy.md says the detached flow uses, it does use."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from helpers import PYTORCH_DLAMI, PYTORCH_SSM
from infra.policies import justified
from infra.policy_check import check_policies, record_operations
from moto import mock_aws

from spotrain.cloud import ImageChoice
from spotrain.cloud.aws import autoscaling, network, stack, sweep
from spotrain.cloud.aws.instances import LaunchSpec, RegionResources
from spotrain.cloud.local.moto_patches import add_dlami
from spotrain.onboard import supervisor
from spotrain.onboard.ledger import AttemptRecord, RunSettings

pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse AWS")
R = "us-east-1"
DETACHED = "Granted but not used by test_policy.py's flows: a detached run's"


@pytest.fixture
def world(isolated_env: Path) -> Iterator[tuple[boto3.Session, stack.InfraOutputs]]:
    with mock_aws():
        add_dlami(R, name=PYTORCH_DLAMI, ssm_name=PYTORCH_SSM)
        sess = boto3.Session(region_name=R)
        yield sess, stack.init(sess, region=R).outputs


def test_the_detached_flow_calls_only_what_the_policies_allow(world, isolated_env: Path) -> None:
    sess, out = world
    ec2 = sess.client("ec2", region_name=R)  # the test's own: not recorded
    image = ec2.describe_images()["Images"][0]
    with record_operations() as rec:
        key = network.ensure_key_pair(sess, region=R, owner="alice", state_dir=isolated_env)
        sg = network.ensure_security_group(sess, region=R, run_id="r1", owner="alice", ssh_cidr="203.0.113.7")
        subnets = network.default_subnets(ec2, sg.vpc_id)
        res = RegionResources(R, ImageChoice(image["ImageId"], "dlami", "ssm", "test"), key.name, sg.group_id)
        launch = LaunchSpec(
            run_id="r1", attempt_id="detached", owner="alice", instance_type="g4dn.xlarge", root_gb=100,
            instance_profile=out.instance_profile_arn, user_data="#!/bin/bash\n",
        )  # fmt: skip
        group = autoscaling.create_group(sess, autoscaling.GroupSpec(launch, subnets), res)
        # On the instance, as the instance role: its record, then leaving the group, then the end.
        s3, asg, ec2_role = supervisor.clients(R)
        run = supervisor.RunBucket(s3, out.bucket, "r1")
        settings = RunSettings("r1", out.bucket, R, group.name, "g4dn.xlarge", [], {})
        me = supervisor.Identity(group.instances[0][0], "g4dn.xlarge", group.instances[0][1], "spot")
        sup = supervisor.Supervisor(run, settings, me, asg, run_dir=isolated_env / "run", python="python")
        supervisor.spot_price_now(ec2_role, me)
        now = time.time()
        run.write_attempt(AttemptRecord(1, me.instance_id, me.instance_type, me.zone, "spot", now, 0.3, now))
        run.ledger()
        sup.leave_group()
        sup.end_run("SUCCEEDED", "attempt 1 finished", 1)
        autoscaling.describe_group(sess, R, "r1")
        left = sweep.find_leftovers(sess, regions=[R], run_id="r1")  # `spotrain down r1`
        assert sweep.sweep(sess, left, deadline_s=30).failed == []
    report = check_policies(rec, bucket=out.bucket)  # raises, listing each call a policy does not allow
    claimed = justified(DETACHED)
    used = report.used["controller"] | report.used["trainer"]
    assert claimed - {"iam:CreateServiceLinkedRole"} <= used, claimed - used  # AWS, not moto, asks that one
    assert {"ec2:RunInstances", "iam:PassRole"} <= report.used["controller"]  # the group's launch rights
    assert {"autoscaling:SetDesiredCapacity", "s3:PutObject", "ec2:DescribeSpotPriceHistory"} <= report.used[
        "trainer"
    ]
    assert sweep.find_leftovers(sess, regions=[R], run_id="r1") == []
