"""Evaluation over the whole held-out set, all ranks together."""

from __future__ import annotations

import torch
import torch.distributed as dist

from trainer.data import eval_batches
from trainer.dist import Dist
from trainer.recipes import Recipe


@torch.no_grad()
def evaluate(
    model, val, ddp: Dist, recipe: Recipe, size: int, autocast, workers: int, seed: int
) -> dict[str, float]:
    """top-1 (and top-5 where there are more than five classes) over the whole held-out set, all ranks."""
    model.eval()
    totals = torch.zeros(3, dtype=torch.float64, device=ddp.device)  # top1 hits, top5 hits, samples
    batches = eval_batches(len(val), ddp.world_size, ddp.rank, recipe.eval_batch_size)
    for x, y in val.loader(
        batches, seed=seed, epoch=0, first=0, rank=ddp.rank, size=size, train=False, workers=workers
    ):
        if ddp.device.type == "cuda" and recipe.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast:
            logits = model(x)
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hits = top == y[:, None]
        totals += torch.stack(
            [hits[:, 0].sum(), hits.any(dim=1).sum(), torch.tensor(len(y), device=y.device)]
        ).double()
    if ddp.enabled:
        dist.all_reduce(totals)
    model.train()
    top1, top5, n = totals.tolist()
    metrics = {"top1": round(top1 / n, 6)}
    if logits.shape[1] > 5:
        metrics["top5"] = round(top5 / n, 6)
    return metrics
