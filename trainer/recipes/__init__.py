"""Recipes: one file a recipe, each a small dataclass of choices. Adding one is adding one file here
that defines `RECIPE`; this package finds it by name."""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from trainer import TrainerError


@dataclass(frozen=True)
class Phase:
    """A stretch of training at one image size (progressive resizing), from `start` (share of epochs)."""

    start: float  # where the phase begins, as a share of the schedule's epochs in [0, 1)
    size: int  # training image side in pixels
    batch_size: int  # per process; the LR follows it linearly (Goyal et al. 2017)


@dataclass(frozen=True)
class Recipe:
    name: str  # what --recipe takes
    dataset: str  # which loader in trainer/data.py reads --data: digits | cifar10 | imagenet
    model: Callable[[int], Any] = field(repr=False)  # builds the network for a number of classes
    phases: tuple[Phase, ...]  # progressive resizing; one phase for a fixed size
    epochs: int  # the one-cycle schedule's length (--max-epochs overrides)
    max_lr: float  # peak LR for one process at phases[0].batch_size; scaled by world size
    optimizer: str = "sgd"  # "sgd" (Nesterov) or "adamw"
    weight_decay: float = 5e-4  # L2 / decoupled decay on conv and linear weights
    no_decay_bn_bias: bool = True  # no weight decay on BatchNorm parameters and biases
    label_smoothing: float = 0.0  # cross-entropy label smoothing
    div: float = 25.0  # one-cycle: start LR = max_lr / div
    final_div: float = 1e4  # one-cycle: final LR = max_lr / div / final_div
    pct_start: float = 0.25  # one-cycle: share of training spent warming up
    target_metric: str = "top1"  # which eval metric --target-acc is about: top1 | top5
    target_acc: float = 0.94  # stop when the target metric reaches this (DAWNBench's rule)
    eval_batch_size: int = 512  # per process
    log_every: int = 50  # steps between `step` events
    channels_last: bool = True  # NHWC memory format on CUDA (faster convolutions with tensor cores)
    workers: int = 8  # data loader processes per GPU (folder data sets only)
    schedule: str = "cosine"  # one-cycle's halves: "cosine" (fast.ai) or "linear" (a triangle, airbench)
    moms: tuple[float, float] = (0.95, 0.85)  # momentum at the ends and at the LR's peak; equal: constant
    bias_lr_scale: float = 1.0  # LR multiplier of biases and norm parameters (their decay divided by it)
    lookahead_every: int = 0  # steps between lookahead updates (pull the weights to their EMA); 0: none
    lookahead_decay: float = 0.95**5  # the EMA's decay at the end, ramped up from 0 as progress^3
    eval_every: int = 1  # epochs between evals (--eval-every overrides); 0: one eval, at the end
    tta: int = 0  # test-time augmentation at the last eval: 0 none, 1 + flip, 2 + 1-px translations
    eval_size_scale: float = 1.0  # last eval's image side over the training side (FixRes: test larger)
    translate: int | None = None  # in-memory sets: random translation by up to this many px (None: loader's)
    flip: str | None = None  # in-memory sets: "random", "alternate" (airbench) or "none" (None: loader's)
    prepare: Callable[[Any, Any], None] | None = field(default=None, repr=False)  # (model, train set):
    # initialise the model from the training data before training (e.g. a whitening layer)

    def to_config(self) -> dict[str, Any]:
        """The recipe as plain data for the `start` event (the model by its builder's name)."""
        skip = ("model", "prepare")
        config = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip}
        config["phases"] = [dataclasses.asdict(p) for p in self.phases]
        for name in skip:
            value = getattr(self, name)
            config[name] = getattr(value, "__name__", str(value)) if value is not None else None
        return config


def known_recipes() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def get_recipe(name: str) -> Recipe:
    """The recipe called `name`; an unknown name lists the known ones."""
    known = known_recipes()
    if name not in known:
        raise TrainerError(
            f"unknown recipe {name!r}; known recipes: {', '.join(known)}",
            "pass one of them to --recipe, or add a file to trainer/recipes/ that defines RECIPE",
        )
    return importlib.import_module(f"{__name__}.{name}").RECIPE
