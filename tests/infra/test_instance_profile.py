"""The instance profile a real launch passes: AwsCloud reads it from the state file `spotrain init`
wrote, else from the stack (init ran on another machine), and has none before init ran; each read is
allowed by infra/controller-policy.json."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from helpers import PYTORCH_DLAMI, PYTORCH_SSM

from spotrain.cloud.aws import stack
from spotrain.cloud.aws.cloud import AwsCloud
from spotrain.cloud.local.moto_patches import add_dlami

from .policy_check import check_policies, record_operations

pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse AWS")

R = "us-east-1"


def test_no_profile_before_init_then_the_stacks(aws: boto3.Session, isolated_env: Path) -> None:
    with record_operations() as rec:
        assert AwsCloud(regions=[R], bucket="b").instance_profile() is None
    done = stack.init(aws, region=R)  # as an administrator: not recorded
    with record_operations() as later:
        cloud = AwsCloud(regions=[R], bucket=done.outputs.bucket)
        assert cloud.instance_profile() == done.outputs.instance_profile_arn
        done.state_file.unlink()  # init ran on another machine: the stack is read back, and stored
        assert AwsCloud(regions=[R], bucket="b").instance_profile() == done.outputs.instance_profile_arn
    assert stack.load_outputs(R) == done.outputs
    rec.calls += later.calls
    assert [c.operation for c in rec.calls] == ["DescribeStacks", "DescribeStacks"]
    assert check_policies(rec).used["controller"] == {"cloudformation:DescribeStacks"}


def test_the_profile_is_found_in_any_region_the_run_uses(aws: boto3.Session, isolated_env: Path) -> None:
    add_dlami("us-west-2", name=PYTORCH_DLAMI, ssm_name=PYTORCH_SSM)
    done = stack.init(aws, region="us-west-2")  # the stack is in the run's second region only
    cloud = AwsCloud(regions=[R, "us-west-2"], bucket=done.outputs.bucket)  # --bucket: no stack needed
    assert cloud.instance_profile() == done.outputs.instance_profile_arn
    assert AwsCloud(regions=[R], bucket="b").instance_profile() is None  # a region without it: none
