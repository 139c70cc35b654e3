"""The Deep Learning AMI for a region and an instance's GPU architecture and driver.

First the public SSM parameters, then `describe_images` (owner amazon, newest by CreationDate) as the
fallback, and `--ami` overrides both. The parameter names follow AWS's rule ("Finding the ID of a
DLAMI", DLAMI developer guide): `/aws/service/deeplearning/ami/$arch/$ami_type/latest/ami-id`, where
`$ami_type` is the AMI's name without the words "Deep", "Learning" and "AMI", lower-cased and dashed:
  Deep Learning OSS Nvidia Driver AMI GPU PyTorch 2.13 (Ubuntu 24.04)
    -> /aws/service/deeplearning/ami/x86_64/oss-nvidia-driver-gpu-pytorch-2.13-ubuntu-24.04/latest/ami-id
  Deep Learning Base Proprietary Nvidia Driver AMI (Amazon Linux 2)
    -> /aws/service/deeplearning/ami/x86_64/base-proprietary-nvidia-driver-amazon-linux-2/latest/ami-id

Which image, by GPU architecture (DLAMI guide, "Important NVIDIA driver changes to DLAMIs"): AWS split
the DLAMIs in two groups that are not interchangeable: the OSS-driver ones (NVIDIA's open kernel
modules: Turing and newer, G4dn/G5/G6/G6e/P4/P5) and the proprietary-driver ones (P3, P3dn, G3). Every
PyTorch DLAMI still maintained is an OSS one, so on a V100 its driver would not load and torch would
see no GPU. Volta therefore gets the Base Proprietary Nvidia Driver AMI (Amazon Linux 2; driver 570,
CUDA 12.1-12.3; release notes of version 71.6 list P3 and P3dn), which has no PyTorch: the bootstrap
installs the pinned torch below into a venv on the root volume, once per instance (see VOLTA_TORCH).
"""

from __future__ import annotations

import fnmatch
import re
import shlex
from dataclasses import dataclass
from typing import Any

import boto3

from spotrain import catalog
from spotrain.cloud import ImageChoice
from spotrain.cloud.aws import ClientError, client, error_code, translated
from spotrain.errors import SpotrainError

SSM_PREFIX = "/aws/service/deeplearning/ami"

# The torch a V100 trains with on the proprietary-driver image, installed by infra/bootstrap.sh.
# Why 2.6.0 from PyPI (CUDA 12.4): it has sm_70 kernels and the >= 2.4 APIs the trainer uses, the
# image's driver 570 runs CUDA 12.4, and its wheels (and those of its nvidia-*-cu12 and triton
# dependencies) are manylinux1/2014, so they install on Amazon Linux 2's glibc 2.26. torch 2.7 and
# newer publish manylinux_2_28 wheels only (checked with `pip install --dry-run --platform
# manylinux2014_x86_64 torch==2.7.0`: no candidate), so the newer builds that keep sm_70 (2.8-2.10 on
# CUDA 12.6/12.8/12.9, pytorch#160269 corrected the 2.8 note; from 2.11 CUDA 12.6 only, pytorch#172352;
# never CUDA 13) cannot install on this image. With your own Ubuntu image and the proprietary driver,
# pass --ami: the bootstrap then checks that image's torch has sm_70 instead.
VOLTA_TORCH = "torch==2.6.0 torchvision==0.21.0"
TRAINER_PIP = "numpy scikit-learn boto3"  # what the trainer imports besides torch (the venv is bare)


def ami_type(name: str) -> str:
    """AWS's rule: the AMI name without "Deep", "Learning" and "AMI", lower-cased, words dashed."""
    words = [w for w in re.split(r"[\s()]+", name) if w and w.lower() not in {"deep", "learning", "ami"}]
    return "-".join(words).lower()


@dataclass(frozen=True)
class Dlami:
    name: str  # the AMI's name without its date or version suffix
    cuda: str
    driver: str  # "OSS" (NVIDIA's open kernel modules) or "proprietary"
    torch: str | None  # the image's own PyTorch; None: a base image, torch_pip is installed at boot
    ssh_user: str = "ubuntu"
    torch_pip: str | None = None  # pip requirements the bootstrap installs into a venv

    @property
    def ami_type(self) -> str:
        return ami_type(self.name)

    @property
    def ubuntu(self) -> str | None:
        """The Ubuntu release in the name ('24.04'); None for another OS."""
        found = re.search(r"\(Ubuntu ([0-9.]+)\)", self.name)
        return found.group(1) if found else None

    def ssm_name(self, arch: str) -> str:
        return f"{SSM_PREFIX}/{arch}/{self.ami_type}/latest/ami-id"

    @property
    def name_glob(self) -> str:
        # "...PyTorch 2.9 (Ubuntu 24.04) 20260101" and "...PyTorch 2.9.1 (...)"; "... Version 71.6"
        return self.name.replace(" (", "* (", 1) + "*" if self.torch else self.name + " *"

    def matches(self, name: str) -> bool:
        return fnmatch.fnmatchcase(name, self.name_glob)

    @property
    def what(self) -> str:
        """One phrase for the plan: the image's torch, or the one installed at boot."""
        if self.torch:
            return f"PyTorch {self.torch}, CUDA {self.cuda}"
        pinned = (self.torch_pip or "").split()[0].replace("==", " ")
        return f"{self.driver} NVIDIA driver, {pinned} (CUDA {self.cuda}) installed at boot"


def _pytorch(torch: str, cuda: str) -> list[Dlami]:
    base = f"Deep Learning OSS Nvidia Driver AMI GPU PyTorch {torch} (Ubuntu {{}})"
    return [Dlami(base.format(u), cuda, "OSS", torch) for u in ("24.04", "22.04")]


# Newest first. Turing and newer take the CUDA 13 images, then the CUDA 12 ones (an older region).
CUDA13 = [d for t in ("2.13", "2.12", "2.11", "2.10", "2.9") for d in _pytorch(t, "13")]
CUDA12 = [d for t, c in (("2.8", "12.9"), ("2.7", "12.8"), ("2.6", "12.6")) for d in _pytorch(t, c)]
VOLTA = [
    Dlami(
        "Deep Learning Base Proprietary Nvidia Driver AMI (Amazon Linux 2)",
        "12.4",  # torch's own CUDA runtime (the wheels bring it); the image's toolkits are 12.1-12.3
        "proprietary",
        None,
        ssh_user="ec2-user",  # Amazon Linux's login user
        torch_pip=f"{VOLTA_TORCH} {TRAINER_PIP}",
    )
]


def dry_run_images() -> list[tuple[str, str]]:
    """(AMI name, SSM parameter) of the newest image of each group, for the dry-run to register, so
    that every family in the catalog (Volta's proprietary-driver image included) finds its image."""
    return [(f"{d.name} 20260101", d.ssm_name("x86_64")) for d in (VOLTA[0], CUDA13[0], CUDA12[0])]


def candidates(itype: catalog.InstanceType) -> tuple[list[Dlami], str]:
    """The images that run `itype`'s GPUs, best first, and why that list."""
    gpu = itype.gpu
    if gpu.needs_proprietary_driver:
        return VOLTA, (
            f"{itype.name} has {gpu.name} GPUs ({gpu.architecture}, {gpu.sm}): NVIDIA's open kernel "
            "modules in the OSS-driver PyTorch images support Turing and newer only, so the "
            f"proprietary-driver base image, with {VOLTA_TORCH.split()[0]} (which has {gpu.sm}) installed "
            "at boot because its wheels still install on Amazon Linux 2 (newer ones need glibc 2.28)"
        )
    return CUDA13 + CUDA12, (
        f"{itype.name} has {gpu.name} GPUs ({gpu.architecture}, {gpu.sm}): the newest OSS-driver "
        "PyTorch Deep Learning AMI runs them with its own torch"
    )


def boot_exports(image: ImageChoice, itype: catalog.InstanceType) -> list[str]:
    """The `export` lines the instance's bootstrap reads: how many GPUs torch must see, the login user
    who owns the data directory, and the torch to install when the image has none of its own."""
    lines = [
        f"export SPOTRAIN_GPUS={itype.gpus}",
        f"export SPOTRAIN_LOGIN_USER={shlex.quote(image.ssh_user)}",
    ]
    if image.torch_pip:
        lines.append(f"export SPOTRAIN_TORCH_PIP={shlex.quote(image.torch_pip)}")
    return lines


def with_exports(user_data: str, lines: list[str]) -> str:
    """`lines` put right after the user data's #! line (before everything else)."""
    head, sep, body = user_data.partition("\n") if user_data.startswith("#!") else ("", "", user_data)
    block = "".join(line + "\n" for line in lines)
    return f"{head}{sep}{block}{body}" if head else block + body


def _describe(ec2: Any, image_id: str) -> dict[str, Any] | None:
    try:
        images = ec2.describe_images(ImageIds=[image_id])["Images"]
    except ClientError as err:
        if error_code(err).startswith("InvalidAMIID"):
            return None
        raise
    return images[0] if images and images[0].get("State", "available") == "available" else None


def _choice(image: dict[str, Any], source: str, reason: str, dlami: Dlami | None = None) -> ImageChoice:
    return ImageChoice(
        image_id=image["ImageId"],
        name=image.get("Name", ""),
        source=source,
        reason=reason,
        root_device_name=image.get("RootDeviceName", "/dev/sda1"),
        ssh_user=dlami.ssh_user if dlami else "ubuntu",
        torch_pip=dlami.torch_pip if dlami else None,
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
        return _choice(image, "ssm", f"{why}: {dlami.what}, from {name}", dlami)
    hit = _from_describe(ec2, wanted, itype.arch)
    if hit is not None:
        dlami, image = hit
        return _choice(
            image,
            "describe_images",
            f"{why}: {dlami.what}, the newest amazon image named "
            f"'{dlami.name_glob}' (its SSM parameter was not found)",
            dlami,
        )
    raise SpotrainError(
        f"no Deep Learning AMI for {itype.name} ({itype.gpu.name}, {itype.gpu.architecture}, {itype.arch}) "
        f"in {region}: "
        f"neither the SSM parameters ({wanted[0].ssm_name(itype.arch)} and {len(wanted) - 1} more) "
        "nor describe_images (owner amazon) found one",
        "pass --ami ami-... with an image that has PyTorch and an NVIDIA driver for this GPU",
    )
