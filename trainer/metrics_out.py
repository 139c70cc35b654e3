"""Metrics out, beside events.jsonl: TensorBoard event files (`--tensorboard`) and Weights & Biases
(`--wandb PROJECT`), written from the places trainer/run.py writes the `step` and `eval` events, by
rank 0 only. Both packages are optional: each is imported only when its flag is given, and a missing
one is bad input (exit 2) before any step.

TensorBoard: `RUN_DIR/tensorboard/`, one event file an attempt; the mirror uploads them to
`s3://BUCKET/runs/RUN_ID/tensorboard/`, one log dir for the whole run, so every attempt's file lies in
the same TensorBoard run and the curve goes on across attempts. A resumed attempt opens its writer with
`purge_step` at the resumed step: TensorBoard then hides what an earlier attempt logged at or after that
step (work redone after the notice), as torch.utils.tensorboard.SummaryWriter documents for a restart.

W&B: `wandb.init(project=PROJECT, id=RUN_ID, resume="allow")`, RUN_ID being the run directory's name
(the spotrain run id on an instance): "allow" resumes the run of that id when it exists and starts it
otherwise, the way W&B's guide "Resume a run" describes for preemptible machines, so every attempt adds
to one run. Its files are under RUN_DIR/wandb/ (offline runs too: `wandb sync` them later).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from trainer import TrainerError

TB_DIR = "tensorboard"
FLUSH_S = 10  # the writer's flush interval: the mirror uploads the files with each checkpoint


class MetricsOut:
    """The writers a run asked for; each call goes to all of them."""

    def __init__(self, tensorboard=None, wandb_run=None) -> None:
        self.tb, self.wandb = tensorboard, wandb_run

    def step(self, step: int, loss: float, lr: float, momentum: float, img_per_s: float) -> None:
        values = {
            "train/loss": loss,
            "train/lr": lr,
            "train/momentum": momentum,
            "train/img_per_s": img_per_s,
        }
        self._log(step, values)

    def eval(self, step: int, metrics: dict[str, float], epoch: float) -> None:
        self._log(step, {**{f"eval/{k}": float(v) for k, v in metrics.items()}, "eval/epoch": float(epoch)})

    def _log(self, step: int, values: dict[str, float]) -> None:
        if self.tb is not None:
            for tag, value in values.items():
                self.tb.add_scalar(tag, value, global_step=step)
        if self.wandb is not None:
            self.wandb.log(values, step=step)

    def flush(self) -> None:
        if self.tb is not None:
            self.tb.flush()

    def close(self) -> None:
        """Flush and close every writer (before the mirror's last upload of the logs)."""
        if self.tb is not None:
            self.tb.close()
            self.tb = None
        if self.wandb is not None:
            self.wandb.finish()
            self.wandb = None


def open_metrics(args: argparse.Namespace, run_dir: Path, step: int, config: dict) -> MetricsOut | None:
    """The writers `--tensorboard` and `--wandb` ask for (None for neither), from `step` on."""
    if not args.tensorboard and not args.wandb:
        return None
    tb = _tensorboard(run_dir, step) if args.tensorboard else None
    run = _wandb(args.wandb, run_dir, config) if args.wandb else None
    return MetricsOut(tb, run)


def _tensorboard(run_dir: Path, step: int):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        raise TrainerError(
            f"--tensorboard needs the tensorboard package, which is not installed ({err})",
            "pip install tensorboard (spotrain's extra: spotrain[tensorboard]), or drop --tensorboard",
        ) from None
    attempt = os.environ.get("SPOTRAIN_ATTEMPT", "")
    return SummaryWriter(
        log_dir=str(run_dir / TB_DIR),
        purge_step=step + 1 if step else None,  # resumed at a checkpoint of `step`: hide what came after it
        flush_secs=FLUSH_S,
        filename_suffix=f".attempt-{attempt}" if attempt else "",
    )


def _wandb(project: str, run_dir: Path, config: dict):
    try:
        import wandb
    except ImportError as err:
        raise TrainerError(
            f"--wandb needs the wandb package, which is not installed ({err})",
            "pip install wandb (spotrain's extra: spotrain[wandb]), or drop --wandb",
        ) from None
    return wandb.init(
        project=project,
        id=run_dir.name,
        resume="allow",  # W&B "Resume a run": the same id continues one run across attempts
        dir=str(run_dir),
        config=config,
        name=run_dir.name,
    )
