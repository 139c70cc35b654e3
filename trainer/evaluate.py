"""Evaluation over the whole held-out set, all ranks together, with test-time augmentation at the end."""

from __future__ import annotations

from contextlib import AbstractContextManager

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from trainer.data import eval_batches
from trainer.dist import Dist
from trainer.recipes import Recipe


def predict(model: nn.Module, x: torch.Tensor, tta: int) -> torch.Tensor:
    """Logits, averaged over views: tta 0 the image; 1 + its mirror image; 2 + both mirrored and
    translated by one pixel up-left and down-right (airbench's weights: 1/2 the plain pair, 1/4 each
    translated pair). Deterministic: no view is random."""

    def mirrored(v: torch.Tensor) -> torch.Tensor:
        return 0.5 * (model(v) + model(v.flip(3))) if tta >= 1 else model(v)

    logits = mirrored(x)
    if tta >= 2:
        h, w = x.shape[2:]
        padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
        shifted = [padded[:, :, :h, :w], padded[:, :, 2:, 2:]]
        logits = 0.5 * logits + 0.25 * (mirrored(shifted[0]) + mirrored(shifted[1]))
    return logits


@torch.no_grad()
def evaluate(
    model: nn.Module,
    val,
    ddp: Dist,
    recipe: Recipe,
    size: int,
    autocast: AbstractContextManager,
    workers: int,
    seed: int,
    tta: int = 0,
) -> dict[str, float]:
    """top-1 (and top-5 where there are more than five classes) over the whole held-out set, all ranks."""
    model.eval()
    totals = torch.zeros(3, dtype=torch.float64, device=ddp.device)  # top1 hits, top5 hits, samples
    batches = eval_batches(len(val), ddp.world_size, ddp.rank, recipe.eval_batch_size)
    classes = 0
    for x, y in val.loader(
        batches, seed=seed, epoch=0, first=0, rank=ddp.rank, size=size, train=False, workers=workers
    ):
        if ddp.device.type == "cuda" and recipe.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast:
            logits = predict(model, x, tta)
        classes = logits.shape[1]
        top = logits.topk(min(5, classes), dim=1).indices
        hits = top == y[:, None]
        totals += torch.stack(
            [hits[:, 0].sum(), hits.any(dim=1).sum(), torch.tensor(len(y), device=y.device)]
        ).double()
    if ddp.enabled:
        dist.all_reduce(totals)
    model.train()
    top1, top5, n = totals.tolist()
    metrics = {"top1": round(top1 / n, 6)}
    if classes > 5:
        metrics["top5"] = round(top5 / n, 6)
    return metrics
