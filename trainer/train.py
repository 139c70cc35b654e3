"""The training loop: one-cycle, DDP, AMP, asynchronous checkpoints, and a clean stop on a spot notice.

    python -m trainer.train --recipe digits --run-dir runs/d                  # one process, CPU
    torchrun --nproc_per_node=8 -m trainer.train --recipe imagenet --data /data --run-dir runs/r

Exit codes (ARCHITECTURE.md's contract): 0 finished (target reached or schedule done), 75 stopped for a spot
interruption after a complete checkpoint, 2 bad input; anything else is a crash. The controller reads
only `RUN_DIR/events.jsonl` (and status.json); train.log is for people.

Read top to bottom: Setup (main, then the run's data, net and checkpoints), Data, the training Step,
and the Training loop. The network is trainer/net.py's; what a run writes (events, status,
checkpoints, the stop for a notice) is trainer/run.py's; resuming is trainer/resume.py's.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import torch

from trainer import TrainerError
from trainer.args import Settings, check_args, parse_args
from trainer.checkpoint import Checkpointer, Progress
from trainer.data import Datasets, ResumableSampler
from trainer.datasets import load_datasets
from trainer.dist import Dist
from trainer.events import EventLog
from trainer.net import build_net
from trainer.recipes import Recipe, get_recipe
from trainer.resume import resume
from trainer.run import Run, Throughput
from trainer.schedule import set_lr_momentum
from trainer.util import make_logger


# ------------------------------------------------------------------------------------------------ Setup
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return train(args)
    except TrainerError as err:
        print(f"error: {err.message}" + (f"\nhint: {err.hint}" if err.hint else ""), file=sys.stderr)
        return err.exit_code


def train(args: argparse.Namespace) -> int:
    """One run, start to exit code; whatever ends it early is the last event in events.jsonl."""
    recipe = get_recipe(args.recipe)
    check_args(args, recipe)
    ddp = Dist()
    run_dir: Path = args.run_dir
    if ddp.master:
        run_dir.mkdir(parents=True, exist_ok=True)
    ddp.barrier()
    events = EventLog(run_dir / "events.jsonl" if ddp.master else None)
    log = make_logger(run_dir / "train.log" if ddp.master else None)
    try:
        run = set_up(args, recipe, ddp, run_dir, events, log)
        return train_loop(run)
    except TrainerError as err:
        events.write("error", message=err.message, hint=err.hint)
        raise
    except BaseException as err:
        events.write("error", message=f"{err.__class__.__name__}: {err}")
        raise
    finally:
        events.close()
        ddp.close()


def set_up(
    args: argparse.Namespace, recipe: Recipe, ddp: Dist, run_dir: Path, events: EventLog, log: logging.Logger
) -> Run:
    """Data, model and checkpoints in place, resumed if --resume says so, and the `start` event written."""
    started = time.time()
    # On a CPU, denormal floats (the tiny values late in a one-cycle schedule) make each op ~3x slower
    # (measured on digits: 59 vs 186 steps/s); flushing them to zero costs nothing that matters.
    torch.set_flush_denormal(True)
    torch.manual_seed(args.seed)
    settings = Settings.resolve(args, recipe)
    data, sampler = load_data(args, recipe, ddp, settings)
    net = build_net(args, recipe, ddp, data, settings)
    mirror = None
    if args.mirror and ddp.master:
        from trainer.mirror import Mirror

        mirror = Mirror(args.mirror, run_dir, events, keep=args.keep)
    ckpt = Checkpointer(
        run_dir / "ckpt", events, keep=args.keep, on_complete=mirror.checkpoint if mirror else None
    )
    progress = Progress()
    stateful = {
        "model": net.raw,
        "optimizer": net.optimizer,
        "scaler": net.scaler,
        "lookahead": net.lookahead,
    }
    resumed_from = resume(args, ddp, run_dir, events, stateful, net.precision, progress, sampler, settings)
    run = Run(
        args, recipe, settings, ddp, run_dir, events, log, data, sampler, net, ckpt, mirror, progress, started
    )
    if ddp.master and (args.tensorboard or args.wandb):
        from trainer.metrics_out import open_metrics

        run.metrics = open_metrics(args, run_dir, progress.step, {**recipe.to_config(), "seed": args.seed})
    run.announce(resumed_from)
    return run


# ------------------------------------------------------------------------------------------------- Data
def load_data(
    args: argparse.Namespace, recipe: Recipe, ddp: Dist, settings: Settings
) -> tuple[Datasets, ResumableSampler]:
    """The recipe's data set on the device, and the sampler that shards and orders it."""
    data = load_datasets(recipe.dataset, args.data)
    if recipe.translate is not None:  # in-memory sets: the recipe's augmentation over the loader's
        data.train.crop_pad = recipe.translate
    if recipe.flip is not None:
        data.train.flip = recipe.flip
    data.train.to(ddp.device)
    data.val.to(ddp.device)
    sampler = ResumableSampler(len(data.train), ddp.world_size, ddp.rank, args.seed)
    if min(sampler.steps_per_epoch(p.batch_size) for p in settings.phases) < 1:
        raise TrainerError(
            f"{len(data.train)} training samples give no full batch of "
            f"{max(p.batch_size for p in settings.phases)} per process on {ddp.world_size} process(es)",
            "pass a smaller --batch-size, or more data",
        )
    return data, sampler


# ------------------------------------------------------------------------------------------------- Step
def train_step(model, x, y, criterion, optimizer, autocast, scaler) -> torch.Tensor:
    """One optimizer step; bench/gpu.py times this same function. The scaler is a pass-through unless
    the precision is fp16, so there is no branch on the dtype."""
    with autocast:
        loss = criterion(model(x), y)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return loss


# --------------------------------------------------------------------------------------------- Training
def train_loop(run: Run) -> int:
    """Epochs of steps until the target, the schedule's end or --max-steps: exit 0; a spot notice: 75."""
    net, p, s, ddp = run.net, run.progress, run.settings, run.ddp
    watcher = run.arm_watcher()
    throughput, run.last_save = Throughput(), time.monotonic()
    stop_reason = None
    net.model.train()
    while p.epoch < s.epochs and stop_reason is None:
        phase = s.phase_at(p.epoch)
        steps = run.sampler.steps_per_epoch(phase.batch_size)
        lr_scale = ddp.world_size * phase.batch_size / s.ref_batch  # linear scaling rule
        global_batch = phase.batch_size * ddp.world_size
        epoch_t = time.perf_counter()
        for x, y in run.epoch_batches(phase):
            at = (p.epoch + p.batch / steps) / s.epochs  # progress through the schedule
            lr, momentum = net.schedule(at)
            set_lr_momentum(net.optimizer, lr * lr_scale, momentum)
            if net.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            loss = train_step(net.model, x, y, net.criterion, net.optimizer, net.autocast, net.scaler)
            if net.lookahead is not None:
                net.lookahead.step(net.raw, p.step + 1, at)
            p.step += 1
            p.batch += 1
            p.images_seen += global_batch
            throughput.images += global_batch
            if p.step % s.log_every == 0:
                run.log_step(loss.item(), lr * lr_scale, momentum, steps, throughput)
            if run.notice_or_checkpoint(watcher):
                return run.stop_for_notice(watcher)
            if run.args.max_steps and p.step >= run.args.max_steps:
                stop_reason = "max_steps"
                break

        # ---------------------------------------------------------------------- End of an epoch
        epoch_done = p.batch >= steps
        if epoch_done:
            seconds = round(time.perf_counter() - epoch_t, 3)
            run.events.write(
                "epoch",
                epoch=p.epoch + 1,
                seconds=seconds,
                step=p.step,
                size=phase.size,
                batch_size=global_batch,
            )
        final = stop_reason is not None or epoch_done and p.epoch + 1 >= s.epochs
        eval_due = final or epoch_done and s.eval_every and (p.epoch + 1) % s.eval_every == 0
        if eval_due and run.run_eval(phase, steps, epoch_done, final) >= s.target:
            stop_reason = "target"
        if epoch_done:
            p.epoch += 1
            p.batch = 0
        run.status("training")
        throughput = Throughput()  # img/s counts training only

    watcher.stop()
    return run.finish(stop_reason)


if __name__ == "__main__":
    sys.exit(main())
