"""The LR range test (Smith 2015; fast.ai's lr_find): grow the LR exponentially each step from tiny to
huge, record the loss, stop when it diverges, and suggest a max LR for the one-cycle schedule.

    python -m trainer.lr_find --recipe digits [--out lr_find.csv]
    python -m trainer.launch --standalone --nproc_per_node=8 -m trainer.lr_find --recipe imagenet --data D

It runs at the run's real global batch: under torchrun every rank takes its share, DDP averages the
gradients, and the recorded loss is the mean over ranks (so every rank stops at the same step). The
LR that suits a batch is what is measured, not one process's, scaled by the world size afterwards.

The suggestion is the LR at the lowest point of a centred moving average of the loss (each point the
mean of the `HALF_WINDOW` steps either side): where the loss stops improving and turns ragged, which
Smith's super-convergence paper takes as the one-cycle's peak (fast.ai's "a tenth of it" is for
training at one constant LR). Not the lowest point of an exponential moving average: an EMA trails the
loss by about 1/(1 - beta) steps, so its minimum comes late, at an LR too high by the growth factor to
that power (about 2x on digits' sweep).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from trainer import EXIT_BAD_INPUT, TrainerError
from trainer.data import ResumableSampler
from trainer.datasets import load_datasets
from trainer.dist import Dist
from trainer.net import build_optimizer
from trainer.recipes import get_recipe
from trainer.schedule import set_lr_momentum

BETA = 0.9  # the EMA that decides when the loss has diverged (online, so it can only look back)
HALF_WINDOW = 5  # the centred average's reach each side: 11 steps, a 2.6x span of LR on a 150-step sweep


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m trainer.lr_find", description=__doc__.split("\n")[0])
    p.add_argument("--recipe", required=True)
    p.add_argument("--data", type=Path)
    p.add_argument("--out", type=Path, default=Path("lr_find.csv"), help="CSV: step, lr, loss, centred")
    p.add_argument("--start", type=float, default=1e-5)
    p.add_argument("--end", type=float, default=10.0)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--batch-size", type=int, help="per process (the recipe's first phase's by default)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def centred_average(values: list[float], half_window: int = HALF_WINDOW) -> list[float]:
    """Each value replaced by the mean of those within `half_window` of it (fewer at the ends): a
    smoothing with no lag, unlike an EMA."""
    out = []
    for i in range(len(values)):
        window = values[max(0, i - half_window) : i + half_window + 1]
        out.append(sum(window) / len(window))
    return out


def suggest(rows: list[dict]) -> float:
    """The LR at the lowest point of the centred average of the finite losses."""
    finite = [r for r in rows if math.isfinite(r["loss"])]
    smooth = centred_average([r["loss"] for r in finite])
    for row, value in zip(finite, smooth, strict=True):
        row["centred"] = value
    return finite[min(range(len(finite)), key=smooth.__getitem__)]["lr"]


def lr_range_test(args: argparse.Namespace, ddp: Dist) -> tuple[list[dict], float, int]:
    """(rows, suggested max LR at the global batch, the global batch)."""
    if not 0 < args.start < args.end or args.steps < 10:
        raise TrainerError(
            f"--start {args.start} --end {args.end} --steps {args.steps}: need 0 < start < end and 10+ steps",
            "e.g. --start 1e-6 --end 10 --steps 150",
        )
    recipe = get_recipe(args.recipe)
    torch.manual_seed(args.seed)
    data = load_datasets(recipe.dataset, args.data)
    data.train.to(ddp.device)
    raw = recipe.model(data.num_classes).to(ddp.device)
    optimizer = build_optimizer(recipe, raw)
    model = raw
    if ddp.enabled:
        model = nn.parallel.DistributedDataParallel(
            raw, device_ids=[ddp.local_rank] if ddp.device.type == "cuda" else None
        )
    criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    phase = recipe.phases[0]
    batch = args.batch_size or phase.batch_size
    sampler = ResumableSampler(len(data.train), ddp.world_size, ddp.rank, args.seed)
    if sampler.steps_per_epoch(batch) < 1:
        raise TrainerError(f"no full batch of {batch} per process", "pass a smaller --batch-size")
    growth = (args.end / args.start) ** (1 / (args.steps - 1))
    rows: list[dict] = []
    avg, best, epoch = 0.0, math.inf, 0
    while True:
        batches = sampler.batches(epoch, batch)
        loader = data.train.loader(
            batches,
            seed=args.seed,
            epoch=epoch,
            first=0,
            rank=ddp.rank,
            size=phase.size,
            train=True,
            workers=recipe.workers,
        )
        for x, y in loader:
            lr = args.start * growth ** len(rows)
            set_lr_momentum(optimizer, lr, 0.9)
            loss = criterion(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            value = loss.detach()
            if ddp.enabled:  # the global batch's loss, and the same stop on every rank
                dist.all_reduce(value)
                value /= ddp.world_size
            value = value.item()
            avg = BETA * avg + (1 - BETA) * value
            smoothed = avg / (1 - BETA ** (len(rows) + 1))  # debiased
            rows.append({"step": len(rows), "lr": lr, "loss": value})
            best = min(best, smoothed)
            if not math.isfinite(smoothed) or smoothed > 4 * best or len(rows) >= args.steps:
                return rows, suggest(rows), batch * ddp.world_size
        epoch += 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ddp = Dist()
    try:
        rows, suggestion, global_batch = lr_range_test(args, ddp)
    except TrainerError as err:
        print(f"error: {err.message}" + (f"\nhint: {err.hint}" if err.hint else ""), file=sys.stderr)
        return EXIT_BAD_INPUT
    finally:
        ddp.close()
    if not ddp.master:
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["step", "lr", "loss", "centred"])
        writer.writeheader()
        writer.writerows(rows)
    recipe = get_recipe(args.recipe)
    # The trainer scales max_lr by global batch / the recipe's first-phase batch (the linear rule).
    ref = recipe.phases[0].batch_size
    as_recipe = suggestion * ref / global_batch
    print(f"{len(rows)} steps, LR {rows[0]['lr']:.2g} .. {rows[-1]['lr']:.2g}; CSV: {args.out}")
    print(f"suggested LR at global batch {global_batch} ({ddp.world_size} process(es)): {suggestion:.4g}")
    print(f"suggested max LR: {as_recipe:.4g} (recipe {recipe.name} uses {recipe.max_lr:g} at batch {ref})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
