"""The trainer's command line (ARCHITECTURE.md's contract, plus the flags listed there as beyond it), and the
settings it makes of a recipe's defaults."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path

from trainer import TrainerError
from trainer.recipes import Phase, Recipe


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m trainer.train",
        description="The training loop: one-cycle, DDP, AMP, checkpoints, a clean stop on a spot notice.",
    )
    p.add_argument("--recipe", required=True, help="digits | cifar10 | imagenet (a file in trainer/recipes/)")
    p.add_argument("--run-dir", required=True, type=Path, help="events.jsonl, train.log, status.json, ckpt/")
    p.add_argument("--data", type=Path, help="the data set's directory (not needed for digits)")
    p.add_argument(
        "--resume", help="auto (this run dir, then --mirror), a checkpoint PATH, or s3://BUCKET/runs/RUN"
    )
    p.add_argument("--mirror", help="s3://BUCKET/runs/RUN_ID: upload checkpoints and logs there")
    p.add_argument(
        "--target-acc", type=float, help="stop at this eval accuracy, in (0, 1] (recipe's default)"
    )
    p.add_argument("--max-epochs", type=int, help="the schedule's length in epochs (recipe's default)")
    p.add_argument("--checkpoint-every", type=float, default=600.0, help="seconds between checkpoints")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--batch-size", type=int, help="per-process batch for every phase (the LR follows it)")
    p.add_argument("--max-steps", type=int, help="stop after this many steps (an eval, then done)")
    p.add_argument("--log-every", type=int, help="steps between step events (recipe's default)")
    p.add_argument("--keep", type=int, default=3, help="checkpoints kept, locally and in S3")
    p.add_argument("--workers", type=int, help="data loader processes per GPU (recipe's default)")
    p.add_argument(
        "--eval-every", type=int, help="epochs between evals; 0: only at the end (recipe's default)"
    )
    p.add_argument(
        "--tensorboard", action="store_true", help="TensorBoard event files in RUN_DIR/tensorboard"
    )
    p.add_argument("--wandb", metavar="PROJECT", help="log to W&B PROJECT, the run dir's name as the run id")
    return p.parse_args(argv)


def check_args(args: argparse.Namespace, recipe: Recipe) -> None:
    """Bad values are refused before anything is written."""
    if args.target_acc is not None and not 0.0 < args.target_acc <= 1.0:
        raise TrainerError(
            f"--target-acc {args.target_acc} is outside (0, 1]", "give an accuracy as a fraction, e.g. 0.94"
        )
    for name in ("max_epochs", "batch_size", "max_steps", "log_every", "keep"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise TrainerError(
                f"--{name.replace('_', '-')} {value} must be at least 1", "give a positive whole number"
            )
    if args.eval_every is not None and args.eval_every < 0:
        raise TrainerError(f"--eval-every {args.eval_every} must be 0 or more", "give epochs, e.g. 1")
    if not args.checkpoint_every > 0:
        raise TrainerError(
            f"--checkpoint-every {args.checkpoint_every} must be positive", "give seconds, e.g. 600"
        )


@dataclass(frozen=True)
class Settings:
    """What a run trains with: the recipe's defaults, each overridden by its flag when given."""

    epochs: int  # the one-cycle schedule's length (--max-epochs)
    target: float  # stop when the recipe's target metric reaches this (--target-acc)
    log_every: int  # steps between `step` events (--log-every)
    eval_every: int  # epochs between evals; 0: one eval, at the end (--eval-every)
    workers: int  # data loader processes per GPU (--workers)
    phases: tuple[Phase, ...]  # the recipe's progressive resizing, each at --batch-size when given
    ref_batch: int  # the per-process batch the recipe's max_lr is given for (its first phase's)

    @classmethod
    def resolve(cls, args: argparse.Namespace, recipe: Recipe) -> Settings:
        batch = args.batch_size
        return cls(
            epochs=args.max_epochs or recipe.epochs,
            target=args.target_acc if args.target_acc is not None else recipe.target_acc,
            log_every=args.log_every or recipe.log_every,
            eval_every=args.eval_every if args.eval_every is not None else recipe.eval_every,
            workers=args.workers if args.workers is not None else recipe.workers,
            phases=tuple(
                p if batch is None else dataclasses.replace(p, batch_size=batch) for p in recipe.phases
            ),
            ref_batch=recipe.phases[0].batch_size,
        )

    def phase_at(self, epoch: int) -> Phase:
        """The progressive-resizing phase an epoch falls in."""
        progress = epoch / max(self.epochs, 1)
        return [p for p in self.phases if p.start <= progress][-1]
