"""The network and everything that steps it: the recipe's model on the device (channels-last,
compiled, in DDP), its optimizer, one-cycle schedule, lookahead, precision and loss."""

from __future__ import annotations

import argparse
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch
from torch import nn

from trainer.args import Settings
from trainer.data import Datasets
from trainer.dist import Dist
from trainer.lookahead import Lookahead
from trainer.precision import Precision, choose_precision, compile_model, configure_backends
from trainer.recipes import Recipe
from trainer.schedule import OneCycle


@dataclass(frozen=True)
class Net:
    """The network and everything that steps it."""

    raw: nn.Module  # the unwrapped model: what is saved, restored and averaged by lookahead
    model: nn.Module  # `raw`, in DDP when distributed: what trains and evaluates
    optimizer: torch.optim.Optimizer
    criterion: nn.Module
    schedule: OneCycle
    lookahead: Lookahead | None  # None when the recipe has no lookahead
    precision: Precision  # bf16 from compute capability 8.0, fp16 + scaler on 7.x, else fp32
    autocast: AbstractContextManager  # the one context every forward runs in (a no-op in fp32)
    scaler: torch.amp.GradScaler  # on in fp16 only; otherwise a pass-through
    channels_last: bool  # inputs go NHWC too (CUDA, and the recipe asks for it)


def build_net(args: argparse.Namespace, recipe: Recipe, ddp: Dist, data: Datasets, settings: Settings) -> Net:
    device = ddp.device
    raw = recipe.model(data.num_classes).to(device)
    if recipe.prepare is not None:  # e.g. a whitening layer computed from training images
        recipe.prepare(raw, data.train)
    channels_last = device.type == "cuda" and recipe.channels_last
    if channels_last:
        raw = raw.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(recipe, raw)
    precision = choose_precision(device)
    configure_backends(device)  # cudnn.benchmark, TF32
    autocast, scaler = precision.autocast(), precision.scaler()
    if args.compile:
        compile_model(raw, settings.phases)
    model: nn.Module = raw
    if ddp.enabled:
        ddp.barrier()  # every rank built its model: DDP's first broadcast starts under the short timeout
        device_ids = [ddp.local_rank] if device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    schedule = OneCycle(
        recipe.max_lr, recipe.div, recipe.final_div, recipe.pct_start, recipe.moms, recipe.schedule
    )
    lookahead = None
    if recipe.lookahead_every:
        lookahead = Lookahead(raw, recipe.lookahead_every, recipe.lookahead_decay)
    criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    return Net(
        raw, model, optimizer, criterion, schedule, lookahead, precision, autocast, scaler, channels_last
    )


def build_optimizer(recipe: Recipe, model: nn.Module) -> torch.optim.Optimizer:
    """SGD (Nesterov) or AdamW; BatchNorm parameters and biases get no weight decay when the recipe says so."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": params, "weight_decay": recipe.weight_decay}]
    if recipe.no_decay_bn_bias or recipe.bias_lr_scale != 1.0:
        # A bias's LR scaled up, its decay down by as much: lr x decay, the shrink a step, stays put.
        small_decay = 0.0 if recipe.no_decay_bn_bias else recipe.weight_decay / recipe.bias_lr_scale
        groups = [
            {"params": [p for p in params if p.ndim >= 2], "weight_decay": recipe.weight_decay},
            {
                "params": [p for p in params if p.ndim < 2],
                "weight_decay": small_decay,
                "lr_scale": recipe.bias_lr_scale,
            },
        ]
    lr, momentum = OneCycle(recipe.max_lr, moms=recipe.moms)(0.0)
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=(momentum, 0.99))
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=True)
