"""The Deep Learning AMI: SSM parameter first, describe_images as the fallback, --ami to override."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from spotrain import catalog
from spotrain.cloud.aws import images
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


PROPRIETARY = "Deep Learning Base Proprietary Nvidia Driver AMI (Amazon Linux 2) Version {}"
PROPRIETARY_SSM = (
    "/aws/service/deeplearning/ami/x86_64/base-proprietary-nvidia-driver-amazon-linux-2/latest/ami-id"
)


def every_image(region: str = R) -> dict[str, str]:
    """Every image spotrain knows, each under its SSM parameter, as a region has them: name -> id."""
    return {
        d.name: add_dlami(region, name=f"{d.name} 20260101", ssm_name=d.ssm_name("x86_64"))
        for d in images.VOLTA + images.CUDA13 + images.CUDA12
    }


def test_ssm_names_follow_the_documented_rule() -> None:
    # The DLAMI guide's rule ("Finding the ID of a DLAMI"), on the names its release notes give.
    assert images.VOLTA[0].ssm_name("x86_64") == PROPRIETARY_SSM
    assert images.CUDA13[-1].ssm_name("x86_64") == SSM.format("2.9")
    assert images.VOLTA[0].matches(PROPRIETARY.format("71.6"))
    assert not images.CUDA13[0].matches(PROPRIETARY.format("71.6"))


def test_p3_16xlarge_gets_the_proprietary_driver_and_a_torch_with_sm_70(aws) -> None:
    ids = every_image()
    choice = choose_image(aws, region=R, instance_type="p3.16xlarge")
    assert choice.image_id == ids[images.VOLTA[0].name] and choice.source == "ssm"
    assert choice.ssh_user == "ec2-user" and choice.torch_pip and "torch==2.6.0" in choice.torch_pip
    for needle in ("V100", "Volta", "sm_70", "proprietary", "open kernel modules", "Turing", "torch 2.6.0"):
        assert needle in choice.reason, needle
    assert PROPRIETARY_SSM in choice.reason


@pytest.mark.parametrize("itype", sorted(catalog.INSTANCE_TYPES.values(), key=lambda t: t.name), ids=str)
def test_every_gpu_family_gets_an_image_for_its_architecture(aws, itype) -> None:
    ids = every_image()
    choice = choose_image(aws, region=R, instance_type=itype.name)
    assert itype.gpu.architecture in choice.reason and itype.gpu.sm in choice.reason
    if itype.gpu.architecture == "Volta":  # p3, p3dn
        assert choice.image_id == ids[images.VOLTA[0].name] and choice.torch_pip
    else:  # g4dn (Turing) and newer: the current OSS-driver image, with its own torch
        newest = images.CUDA13[0]
        assert choice.image_id == ids[newest.name] and choice.torch_pip is None
        assert choice.ssh_user == "ubuntu" and "PyTorch 2.13" in choice.reason


def test_a_volta_never_gets_an_oss_driver_image(aws) -> None:
    for d in images.CUDA13 + images.CUDA12:  # every OSS image there is, none proprietary
        add_dlami(R, name=f"{d.name} 20260101", ssm_name=d.ssm_name("x86_64"))
    with pytest.raises(SpotrainError) as err:
        choose_image(aws, region=R, instance_type="p3.2xlarge")
    assert "Volta" in err.value.message and "--ami" in err.value.hint


def test_describe_images_fallback_takes_the_newest(aws) -> None:
    def at(month: int) -> datetime:
        return datetime(2025, month, 1, tzinfo=timezone.utc)

    add_dlami(R, name=PROPRIETARY.format("70.1"), created=at(3))
    newest = add_dlami(R, name=PROPRIETARY.format("71.6"), created=at(6))
    add_dlami(R, name=PROPRIETARY.format("70.9"), created=at(4))
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
