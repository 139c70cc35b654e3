"""The Deep Learning AMI: SSM parameter first, describe_images as the fallback, --ami to override."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from spotrain.cloud.aws.images import choose_image
from spotrain.errors import SpotrainError

from .aws_fakes import add_dlami

R = "us-east-1"
SSM = "/aws/service/deeplearning/ami/x86_64/oss-nvidia-driver-gpu-pytorch-{}-ubuntu-22.04/latest/ami-id"
NAME = "Deep Learning OSS Nvidia Driver AMI GPU PyTorch {} (Ubuntu 22.04) {}"


def test_ssm_parameter_for_a_current_gpu(aws) -> None:
    new = add_dlami(R, name=NAME.format("2.9", "20260101"), ssm_name=SSM.format("2.9"))
    add_dlami(R, name=NAME.format("2.8", "20251001"), ssm_name=SSM.format("2.8"))
    choice = choose_image(aws, region=R, instance_type="g5.xlarge")
    assert (choice.image_id, choice.source) == (new, "ssm")
    assert "PyTorch 2.9" in choice.reason and SSM.format("2.9") in choice.reason
    assert choice.root_device_name == "/dev/sda1"


def test_p3_gets_a_cuda12_image_and_is_told_why(aws) -> None:
    add_dlami(R, name=NAME.format("2.9", "20260101"), ssm_name=SSM.format("2.9"))
    old = add_dlami(R, name=NAME.format("2.8", "20251001"), ssm_name=SSM.format("2.8"))
    choice = choose_image(aws, region=R, instance_type="p3.16xlarge")
    assert choice.image_id == old
    assert "V100" in choice.reason and "CUDA 13" in choice.reason and "CUDA 12.9" in choice.reason


def test_describe_images_fallback_takes_the_newest(aws) -> None:
    def at(month: int) -> datetime:
        return datetime(2025, month, 1, tzinfo=timezone.utc)

    add_dlami(R, name=NAME.format("2.7", "20250301"), created=at(3))
    newest = add_dlami(R, name=NAME.format("2.7", "20250601"), created=at(6))
    add_dlami(R, name=NAME.format("2.7", "20250401"), created=at(4))
    choice = choose_image(aws, region=R, instance_type="p3.2xlarge")
    assert (choice.image_id, choice.source) == (newest, "describe_images")
    assert "SSM parameter was not found" in choice.reason


def test_override_and_an_ami_that_does_not_exist(aws) -> None:
    mine = add_dlami(R, name="my own image")
    choice = choose_image(aws, region=R, instance_type="g5.xlarge", override=mine)
    assert (choice.image_id, choice.source) == (mine, "override")
    for bad in ("ami-0123456789abcdef0", "ami-nope"):
        with pytest.raises(SpotrainError) as err:
            choose_image(aws, region=R, instance_type="g5.xlarge", override=bad)
        assert f"'{bad}'" in err.value.message and R in err.value.message


def test_no_image_anywhere_is_a_clear_error(aws) -> None:
    add_dlami(R, name=NAME.format("2.9", "20260101"), ssm_name=SSM.format("2.9"))  # CUDA 13: not for V100
    with pytest.raises(SpotrainError) as err:
        choose_image(aws, region=R, instance_type="p3.16xlarge")
    assert "p3.16xlarge" in err.value.message and "describe_images" in err.value.message
    assert "--ami" in err.value.hint
