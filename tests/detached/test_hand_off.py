"""`launch --detach`'s hand-off on moto: the bundle (trainer/ and onboard/) and the settings in the
run's prefix, the bootstrap's detached exports in the template's user data, a group over the allowed
zones only, in the plan's order; refused before anything is made when no allowed zone has a subnet."""

from __future__ import annotations

import base64
import io
import tarfile
from pathlib import Path

import boto3
import pytest

from spotrain.cloud.aws import autoscaling, detach
from spotrain.cloud.aws.instances import LaunchSpec
from spotrain.cloud.local.moto_patches import add_dlami
from spotrain.contract import TRAINER_DIR
from spotrain.errors import SpotrainError
from spotrain.onboard.ledger import RunSettings, settings_key

R, P3 = "us-east-1", "p3.16xlarge"
DLAMI = "Deep Learning Base Proprietary Nvidia Driver AMI (Amazon Linux 2) Version 71.6"
SSM = "/aws/service/deeplearning/ami/x86_64/base-proprietary-nvidia-driver-amazon-linux-2/latest/ami-id"
ONBOARD = Path(detach.__file__).resolve().parents[2] / "onboard"


def hand_off_request(home: Path, zones: tuple[str, ...]) -> detach.HandOff:
    launch = LaunchSpec(
        run_id="r5", attempt_id="detached", owner="alice", instance_type=P3, root_gb=200,
        user_data="#!/usr/bin/env bash\necho bootstrap\n",
    )  # fmt: skip
    settings = RunSettings(
        "r5", "spotrain-b", R, "spotrain-r5", P3, ["-m", "trainer.train"], {z: 7.0 for z in zones}
    )
    return detach.HandOff(
        launch, settings, zones, home, "203.0.113.7", ((TRAINER_DIR, "trainer"), (ONBOARD, "onboard"))
    )


@pytest.fixture
def world(aws: boto3.Session) -> boto3.Session:
    add_dlami(R, name=DLAMI, ssm_name=SSM)
    aws.client("s3", region_name=R).create_bucket(Bucket="spotrain-b")
    return aws


def test_the_hand_off_uploads_the_bundle_and_settings_then_makes_the_group(
    world: boto3.Session, isolated_env: Path
) -> None:
    zones = (f"{R}c", f"{R}a")
    state = detach.hand_off(world, hand_off_request(isolated_env, zones))
    ec2, s3 = world.client("ec2", region_name=R), world.client("s3", region_name=R)
    subnets = {s["SubnetId"]: s["AvailabilityZone"] for s in ec2.describe_subnets()["Subnets"]}
    assert [subnets[s] for s in state.subnets] == list(zones)
    body = s3.get_object(Bucket="spotrain-b", Key=detach.bundle_key("r5"))["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        names = tar.getnames()
    assert "trainer/train.py" in names and "onboard/supervisor.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    settings = s3.get_object(Bucket="spotrain-b", Key=settings_key("r5"))["Body"].read().decode()
    assert RunSettings.from_json(settings).group == state.name == autoscaling.group_name("r5")
    data = ec2.describe_launch_template_versions(LaunchTemplateName=state.name)["LaunchTemplateVersions"][0]
    user_data = base64.b64decode(data["LaunchTemplateData"]["UserData"]).decode()
    assert user_data.startswith("#!/usr/bin/env bash\n")
    assert "export SPOTRAIN_DETACHED_BUCKET=spotrain-b\nexport SPOTRAIN_DETACHED_RUN=r5\n" in user_data
    assert user_data.endswith("echo bootstrap\n")


def test_no_subnet_in_any_allowed_zone_is_refused_before_the_group(
    world: boto3.Session, isolated_env: Path
) -> None:
    with pytest.raises(SpotrainError, match="no default subnet in any allowed zone"):
        detach.hand_off(world, hand_off_request(isolated_env, (f"{R}z",)))
    assert autoscaling.describe_group(world, R, "r5") is None
    assert "Contents" not in world.client("s3", region_name=R).list_objects_v2(Bucket="spotrain-b")
