"""The Deep Learning AMI (PyTorch, Ubuntu) for a region and an instance's GPU architecture.

First the public SSM parameters (`/aws/service/deeplearning/ami/ARCH/AMI_TYPE/latest/ami-id`), then
`describe_images` (owner amazon, newest by CreationDate) as the fallback, and `--ami` overrides both.
The current PyTorch DLAMIs are built on CUDA 13, which dropped Volta (V100, compute capability 7.0):
for p3.* the newest image still built on CUDA 12.x is picked, and the choice says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3

from spotrain import catalog
from spotrain.cloud import ImageChoice
from spotrain.cloud.aws import ClientError, client, error_code, translated
from spotrain.errors import SpotrainError

SSM_PREFIX = "/aws/service/deeplearning/ami"
CUDA13_MIN_CC = (7, 5)  # CUDA 13 supports Turing (T4) and newer


@dataclass(frozen=True)
class Dlami:
    torch: str
    cuda: str
    ubuntu: str

    @property
    def ami_type(self) -> str:
        return f"oss-nvidia-driver-gpu-pytorch-{self.torch}-ubuntu-{self.ubuntu}"

    def ssm_name(self, arch: str) -> str:
        return f"{SSM_PREFIX}/{arch}/{self.ami_type}/latest/ami-id"

    @property
    def name_glob(self) -> str:
        return f"Deep Learning OSS Nvidia Driver AMI GPU PyTorch {self.torch}* (Ubuntu {self.ubuntu})*"

    def matches(self, name: str) -> bool:
        return name.startswith(f"Deep Learning OSS Nvidia Driver AMI GPU PyTorch {self.torch}") and (
            f"(Ubuntu {self.ubuntu})" in name
        )


def _family(torch: list[str], cuda: list[str]) -> list[Dlami]:
    return [Dlami(t, c, u) for t, c in zip(torch, cuda, strict=True) for u in ("24.04", "22.04")]


# Newest first. Turing and newer take the CUDA 13 images; Volta needs CUDA 12.x.
CUDA13 = _family(["2.11", "2.10", "2.9"], ["13.0", "13.0", "13.0"])
CUDA12 = _family(["2.8", "2.7", "2.6"], ["12.9", "12.8", "12.6"])


def candidates(itype: catalog.InstanceType) -> tuple[list[Dlami], str]:
    """The images that run `itype`'s GPUs, best first, and why that list."""
    if itype.gpu.compute_capability >= CUDA13_MIN_CC:
        return CUDA13 + CUDA12, f"the newest PyTorch Deep Learning AMI supports {itype.gpu.name}"
    cc = ".".join(map(str, itype.gpu.compute_capability))
    return CUDA12, (
        f"{itype.name} has {itype.gpu.name} GPUs (compute capability {cc}), which CUDA 13 images "
        "(PyTorch 2.9 and newer) no longer run, so the newest PyTorch image built on CUDA 12.x"
    )


def _describe(ec2: Any, image_id: str) -> dict[str, Any] | None:
    try:
        images = ec2.describe_images(ImageIds=[image_id])["Images"]
    except ClientError as err:
        if error_code(err).startswith("InvalidAMIID"):
            return None
        raise
    return images[0] if images and images[0].get("State", "available") == "available" else None


def _choice(image: dict[str, Any], source: str, reason: str) -> ImageChoice:
    return ImageChoice(
        image_id=image["ImageId"],
        name=image.get("Name", ""),
        source=source,
        reason=reason,
        root_device_name=image.get("RootDeviceName", "/dev/sda1"),
    )


def _override(ec2: Any, ami: str, itype: catalog.InstanceType, region: str) -> ImageChoice:
    image = _describe(ec2, ami)
    if image is None:
        raise SpotrainError(
            f"AMI '{ami}' does not exist in {region} (or is not available to this account)",
            "AMI ids are per region: check the id with `aws ec2 describe-images --image-ids ID`, "
            "or leave out --ami to use the Deep Learning AMI",
        )
    if image.get("Architecture", itype.arch) != itype.arch:
        raise SpotrainError(
            f"AMI '{ami}' is {image['Architecture']}, but {itype.name} is {itype.arch}",
            "pick an image built for the instance's architecture",
        )
    return _choice(image, "override", f"--ami {ami} ({image.get('Name', 'no name')}) as asked")


def _from_ssm(sess: boto3.Session, ec2: Any, region: str, wanted: list[Dlami], arch: str) -> Any:
    ssm = client(sess, "ssm", region)
    names = [d.ssm_name(arch) for d in wanted]
    found: dict[str, str] = {}
    try:
        for i in range(0, len(names), 10):  # get_parameters takes at most 10 names
            for p in ssm.get_parameters(Names=names[i : i + 10])["Parameters"]:
                found[p["Name"]] = p["Value"]
    except ClientError as err:
        if error_code(err) in {"AccessDeniedException", "AccessDenied"}:
            return None  # no ssm:GetParameter: describe_images still works
        raise
    for dlami, name in zip(wanted, names, strict=True):
        image = _describe(ec2, found[name]) if name in found else None
        if image is not None:
            return dlami, image, name
    return None


def _from_describe(ec2: Any, wanted: list[Dlami], arch: str) -> Any:
    images = ec2.describe_images(
        Owners=["amazon"],
        Filters=[
            {"Name": "name", "Values": [d.name_glob for d in wanted]},
            {"Name": "state", "Values": ["available"]},
            {"Name": "architecture", "Values": [arch]},
        ],
    )["Images"]
    for dlami in wanted:
        mine = [i for i in images if dlami.matches(i.get("Name", ""))]
        if mine:
            return dlami, max(mine, key=lambda i: i.get("CreationDate", ""))
    return None


@translated("find a Deep Learning AMI")
def choose_image(
    sess: boto3.Session, *, region: str, instance_type: str, override: str | None = None
) -> ImageChoice:
    """The image to boot `instance_type` from in `region`, and a sentence saying why that one."""
    itype = catalog.instance_type(instance_type)
    ec2 = client(sess, "ec2", region)
    if override:
        return _override(ec2, override, itype, region)
    wanted, why = candidates(itype)
    hit = _from_ssm(sess, ec2, region, wanted, itype.arch)
    if hit is not None:
        dlami, image, name = hit
        return _choice(image, "ssm", f"{why}: PyTorch {dlami.torch}, CUDA {dlami.cuda}, from {name}")
    hit = _from_describe(ec2, wanted, itype.arch)
    if hit is not None:
        dlami, image = hit
        return _choice(
            image,
            "describe_images",
            f"{why}: PyTorch {dlami.torch}, CUDA {dlami.cuda}, the newest amazon image named "
            f"'{dlami.name_glob}' (its SSM parameter was not found)",
        )
    raise SpotrainError(
        f"no PyTorch Deep Learning AMI for {itype.name} ({itype.gpu.name}, {itype.arch}) in {region}: "
        f"neither the SSM parameters ({wanted[0].ssm_name(itype.arch)} and {len(wanted) - 1} more) "
        "nor describe_images (owner amazon) found one",
        "pass --ami ami-... with an image that has PyTorch and an NVIDIA driver for this GPU",
    )
