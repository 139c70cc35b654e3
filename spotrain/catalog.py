"""The GPU instance types a user would pick, and each recipe's defaults.

On-demand prices are AWS's published Linux prices in us-east-1, read on PRICES_AS_OF; they price the
on-demand equivalent of a run (the pricing API is not needed, and moto does not emulate it). Spot prices
are never taken from here: they come from the spot price history (cloud/aws/prices.py).
Peak TFLOPS are NVIDIA's dense (no sparsity) fp16/bf16 tensor-core figures per GPU, for utilisation.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from spotrain.errors import SpotrainError

PRICES_AS_OF = "2025-06-01"  # us-east-1 on-demand, Linux; P4d and P5 after AWS's June 2025 price cut


@dataclass(frozen=True)
class GpuModel:
    name: str  # as AWS names it in the instance type's description
    memory_gib: int  # per GPU
    peak_tflops: float  # dense fp16/bf16 tensor, per GPU
    compute_capability: tuple[int, int]  # decides which CUDA (and so which Deep Learning AMI) runs it
    architecture: str  # NVIDIA's name for the generation: Volta, Turing, Ampere, Ada, Hopper

    @property
    def sm(self) -> str:
        """The CUDA target a torch build must carry kernels for, e.g. 'sm_70' for a V100."""
        return "sm_{}{}".format(*self.compute_capability)

    @property
    def needs_proprietary_driver(self) -> bool:
        """NVIDIA's open kernel modules (the "OSS Nvidia Driver" AMIs) support Turing (7.5) and newer
        only; its driver install guide says the proprietary driver is required for Maxwell, Pascal
        and Volta. AWS's DLAMI page "Important NVIDIA driver changes" splits the AMIs the same way."""
        return self.compute_capability < (7, 5)


V100 = GpuModel("V100", 16, 125.0, (7, 0), "Volta")
V100_32 = GpuModel("V100", 32, 125.0, (7, 0), "Volta")
T4 = GpuModel("T4", 16, 65.0, (7, 5), "Turing")
A10G = GpuModel("A10G", 24, 70.0, (8, 6), "Ampere")  # AWS's lower-clocked A10: half the A10's 125
L4 = GpuModel("L4", 24, 121.0, (8, 9), "Ada")
L40S = GpuModel("L40S", 48, 362.0, (8, 9), "Ada")
A100 = GpuModel("A100", 40, 312.0, (8, 0), "Ampere")
H100 = GpuModel("H100", 80, 989.0, (9, 0), "Hopper")


@dataclass(frozen=True)
class InstanceType:
    name: str
    gpus: int
    gpu: GpuModel
    vcpus: int
    memory_gib: float
    on_demand_usd_per_hour: float  # us-east-1, as of PRICES_AS_OF
    arch: str = "x86_64"

    @property
    def family(self) -> str:
        """'p3', 'g5', ...: the part before the dot."""
        return self.name.split(".")[0]

    @property
    def quota_class(self) -> str:
        """The letter of the spot vCPU quota that covers this type ('P' for p3..p5, 'G' for g4dn..g6)."""
        return self.name[0].upper()

    @property
    def peak_tflops(self) -> float:
        """The whole instance's dense fp16/bf16 peak, for utilisation figures."""
        return self.gpus * self.gpu.peak_tflops


_TYPES = [
    InstanceType("p3.2xlarge", 1, V100, 8, 61, 3.06),
    InstanceType("p3.8xlarge", 4, V100, 32, 244, 12.24),
    InstanceType("p3.16xlarge", 8, V100, 64, 488, 24.48),
    InstanceType("p3dn.24xlarge", 8, V100_32, 96, 768, 31.212),
    InstanceType("g4dn.xlarge", 1, T4, 4, 16, 0.526),
    InstanceType("g4dn.2xlarge", 1, T4, 8, 32, 0.752),
    InstanceType("g4dn.12xlarge", 4, T4, 48, 192, 3.912),
    InstanceType("g5.xlarge", 1, A10G, 4, 16, 1.006),
    InstanceType("g5.2xlarge", 1, A10G, 8, 32, 1.212),
    InstanceType("g5.12xlarge", 4, A10G, 48, 192, 5.672),
    InstanceType("g5.48xlarge", 8, A10G, 192, 768, 16.288),
    InstanceType("g6.xlarge", 1, L4, 4, 16, 0.8048),
    InstanceType("g6.12xlarge", 4, L4, 48, 192, 4.6016),
    InstanceType("g6e.xlarge", 1, L40S, 4, 32, 1.861),
    InstanceType("g6e.12xlarge", 4, L40S, 48, 384, 10.493),
    InstanceType("p4d.24xlarge", 8, A100, 96, 1152, 21.9576),
    InstanceType("p5.48xlarge", 8, H100, 192, 2048, 55.04),
]
INSTANCE_TYPES: dict[str, InstanceType] = {t.name: t for t in _TYPES}


def instance_type(name: str) -> InstanceType:
    """The catalog entry for `name`; an unknown name raises SpotrainError listing the close matches."""
    try:
        return INSTANCE_TYPES[name.strip().lower()]
    except KeyError:
        pass
    close = difflib.get_close_matches(name.strip().lower(), INSTANCE_TYPES, n=4, cutoff=0.5)
    known = ", ".join(INSTANCE_TYPES)
    raise SpotrainError(
        f"instance type '{name}' is not in spotrain's catalog"
        + (f"; did you mean {', '.join(close)}?" if close else ""),
        f"pick one of: {known}",
    )


@dataclass(frozen=True)
class RecipeDefaults:
    """What the controller needs to know about a recipe before it asks for an instance. The trainer's
    recipe file is the truth for training; these mirror it for planning (the controller never imports
    the trainer)."""

    name: str
    instance: str  # the type to use when --instance is not given
    root_volume_gb: int  # gp3 root: the AMI (~75 GB) plus data and checkpoints kept on the instance
    target_metric: str  # the eval field that `target` applies to
    target: float | None  # None: no target unless the run names one (--target-acc)
    train_flops_per_sample: float  # forward + backward (3x forward), averaged over the resize phases
    samples_per_epoch: int
    epochs: int  # the one-cycle schedule's length
    utilisation: float  # share of the GPUs' peak a run reaches, before any run of ours was measured
    bytes_per_sample: int = 0  # read from disk per sample (0: the data is held in memory)


RECIPES: dict[str, RecipeDefaults] = {
    r.name: r
    for r in [
        # ResNet-50: 8.18 GFLOPs forward at 224 px; 128/224/288 px phases average 0.78 of that.
        # fast.ai's 2018 run (3 h on 8 V100) implies about 10% of peak: data loading bounds ImageNet.
        # ImageNet's train JPEGs average about 110 KB (~140 GB for 1.28 M images), read every epoch.
        RecipeDefaults(
            "imagenet", "p3.16xlarge", 400, "top5", 0.93, 3 * 0.78 * 8.18e9, 1_281_167, 35, 0.10, 110_000
        ),
        # airbench's whitened 3-group net: 0.24 GFLOPs forward at 32 px (torch.utils.flop_counter).
        RecipeDefaults("cifar10", "g5.xlarge", 150, "top1", 0.94, 3 * 0.24e9, 50_000, 10, 0.15),
        # ResNet-9 (DAWNBench): about 0.41 GFLOPs forward at 32 px.
        RecipeDefaults("cifar10_resnet9", "g5.xlarge", 150, "top1", 0.94, 3 * 0.41e9, 50_000, 24, 0.15),
        # The small CNN on 8x8 digits: about 1.3 MFLOPs forward; it runs anywhere, the dry-run on a CPU.
        RecipeDefaults("digits", "g4dn.xlarge", 120, "top1", 0.98, 3 * 1.3e6, 1_437, 5, 0.001),
    ]
}


# What `--data` must hold for the recipes that read it (trainer/data.py's layouts); digits brings its own.
# A launch without it is refused here: the trainer would exit 2 on an instance already billed.
_CIFAR10_BATCHES = "the CIFAR-10 python batches (data_batch_1 .. data_batch_5, test_batch)"
DATA_LAYOUT: dict[str, str] = {
    "imagenet": "ImageFolder directories train/CLASS/*.jpg and val/CLASS/*.jpg",
    "cifar10": _CIFAR10_BATCHES,
    "cifar10_resnet9": _CIFAR10_BATCHES,  # the same data set as cifar10, another network
}


# A run of the user's own command (`spotrain launch -- CMD`): its spec's recipe, never a recipe of the
# trainer. Nothing is known of its work: no FLOPs, no schedule, no target, so the plan's estimate is
# "unknown" (plan.estimate); one A10G is a cheap first machine for a script of unknown size.
COMMAND = RecipeDefaults("command", "g5.xlarge", 150, "top1", None, 0.0, 0, 0, 0.0)


def known_recipe(name: str) -> RecipeDefaults | None:
    """A recipe's defaults, or COMMAND's; None for any other name."""
    return COMMAND if name == COMMAND.name else RECIPES.get(name)


def recipe(name: str) -> RecipeDefaults:
    """The defaults of recipe `name` (or COMMAND's); an unknown name raises SpotrainError listing the recipes."""
    if name == COMMAND.name:
        return COMMAND
    try:
        return RECIPES[name]
    except KeyError:
        raise SpotrainError(f"recipe '{name}' is unknown", f"pick one of: {', '.join(RECIPES)}") from None
