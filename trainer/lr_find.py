"""The LR range test (Smith 2015; fast.ai's lr_find): grow the LR exponentially each step from tiny to
huge, record the loss, stop when it diverges, and suggest a max LR for the one-cycle schedule.

    python -m trainer.lr_find --recipe digits [--out lr_find.csv]

The suggestion is the LR at which the smoothed loss was lowest: where the loss stops improving and turns
ragged, which Smith's super-convergence paper takes as the one-cycle's peak (fast.ai's "a tenth of it"
is for training at one constant LR, not for a cycle that spends most of its time below the peak).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path

import torch
from torch import nn

from trainer import EXIT_BAD_INPUT, TrainerError
from trainer.data import ResumableSampler, load_datasets
from trainer.recipes import get_recipe
from trainer.schedule import set_lr_momentum
from trainer.train import build_optimizer

BETA = 0.9  # loss smoothing: enough to ride out one bad batch, short enough to follow a 150-step sweep


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m trainer.lr_find", description=__doc__.split("\n")[0])
    p.add_argument("--recipe", required=True)
    p.add_argument("--data", type=Path)
    p.add_argument("--out", type=Path, default=Path("lr_find.csv"), help="CSV: step, lr, loss, smoothed")
    p.add_argument("--start", type=float, default=1e-5)
    p.add_argument("--end", type=float, default=10.0)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def lr_range_test(args: argparse.Namespace) -> tuple[list[dict], float]:
    """(rows, suggested max LR)."""
    if not 0 < args.start < args.end or args.steps < 10:
        raise TrainerError(
            f"--start {args.start} --end {args.end} --steps {args.steps}: need 0 < start < end and 10+ steps",
            "e.g. --start 1e-6 --end 10 --steps 150",
        )
    recipe = get_recipe(args.recipe)
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    data = load_datasets(recipe.dataset, args.data)
    data.train.to(device)
    model = recipe.model(data.num_classes).to(device)
    optimizer = build_optimizer(recipe, model)
    criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    phase = recipe.phases[0]
    batch = args.batch_size or phase.batch_size
    sampler = ResumableSampler(len(data.train), 1, 0, args.seed)
    growth = (args.end / args.start) ** (1 / (args.steps - 1))
    rows, avg, best, epoch = [], 0.0, math.inf, 0
    while len(rows) < args.steps:
        batches = sampler.batches(epoch, batch)
        for x, y in data.train.loader(
            batches,
            seed=args.seed,
            epoch=epoch,
            first=0,
            rank=0,
            size=phase.size,
            train=True,
            workers=recipe.workers,
        ):
            lr = args.start * growth ** len(rows)
            set_lr_momentum(optimizer, lr, 0.9)
            loss = criterion(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            value = loss.item()
            avg = BETA * avg + (1 - BETA) * value  # exponential moving average, debiased below
            smoothed = avg / (1 - BETA ** (len(rows) + 1))
            rows.append({"step": len(rows), "lr": lr, "loss": value, "smoothed": smoothed})
            best = min(best, smoothed)
            if not math.isfinite(smoothed) or smoothed > 4 * best or len(rows) >= args.steps:
                return rows, _suggest(rows)
        epoch += 1
    return rows, _suggest(rows)


def _suggest(rows: list[dict]) -> float:
    finite = [r for r in rows if math.isfinite(r["smoothed"])]
    return min(finite, key=lambda r: r["smoothed"])["lr"]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        rows, suggestion = lr_range_test(args)
    except TrainerError as err:
        print(f"error: {err.message}" + (f"\nhint: {err.hint}" if err.hint else ""), file=sys.stderr)
        return EXIT_BAD_INPUT
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["step", "lr", "loss", "smoothed"])
        writer.writeheader()
        writer.writerows(rows)
    recipe = get_recipe(args.recipe)
    print(f"{len(rows)} steps, LR {rows[0]['lr']:.2g} .. {rows[-1]['lr']:.2g}; CSV: {args.out}")
    print(f"suggested max LR: {suggestion:.3g} (recipe {recipe.name} uses {recipe.max_lr:g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
