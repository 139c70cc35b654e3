"""The training loop: one-cycle, DDP, AMP, asynchronous checkpoints, and a clean stop on a spot notice.

    python -m trainer.train --recipe digits --run-dir runs/d                  # one process, CPU
    torchrun --nproc_per_node=8 -m trainer.train --recipe imagenet --data /data --run-dir runs/r

Exit codes (DESIGN.md's contract): 0 finished (target reached or schedule done), 75 stopped for a spot
interruption after a complete checkpoint, 2 bad input; anything else is a crash. The controller reads
only `RUN_DIR/events.jsonl` (and status.json); train.log is for people.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from trainer import EXIT_DONE, EXIT_INTERRUPTED, TrainerError
from trainer.checkpoint import Checkpointer, Progress, find_checkpoint, restore_state, rng_state
from trainer.data import ResumableSampler, eval_batches, load_datasets
from trainer.dist import Dist
from trainer.events import EventLog, write_status
from trainer.recipes import Recipe, get_recipe
from trainer.schedule import OneCycle, set_lr_momentum
from trainer.spot import INJECT_ENV, SpotWatcher
from trainer.util import code_hash, make_logger

NOTICE_FLAG = {
    "imds": 1,
    "sigterm": 2,
    "injected": 3,
}  # agreed by all-reduce MAX; the value says where it came from


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m trainer.train", description=__doc__.split("\n")[0])
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
    p.add_argument("--eval-every", type=int, default=1, help="epochs between evals; 0: only at the end")
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
    if args.eval_every < 0:
        raise TrainerError(f"--eval-every {args.eval_every} must be 0 or more", "give epochs, e.g. 1")
    if not args.checkpoint_every > 0:
        raise TrainerError(
            f"--checkpoint-every {args.checkpoint_every} must be positive", "give seconds, e.g. 600"
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return train(args)
    except TrainerError as err:
        print(f"error: {err.message}" + (f"\nhint: {err.hint}" if err.hint else ""), file=sys.stderr)
        return err.exit_code


def train(args: argparse.Namespace) -> int:
    # -------------------------------------------------------------------------------- Setup
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
        return _train(args, recipe, ddp, run_dir, events, log)
    except TrainerError as err:
        events.write("error", message=err.message, hint=err.hint)
        raise
    except BaseException as err:
        events.write("error", message=f"{err.__class__.__name__}: {err}")
        raise
    finally:
        events.close()
        ddp.close()


def _train(args, recipe: Recipe, ddp: Dist, run_dir: Path, events: EventLog, log: logging.Logger) -> int:
    started = time.time()
    device = ddp.device
    # On a CPU, denormal floats (the tiny values late in a one-cycle schedule) make each op ~3x slower
    # (measured on digits: 59 vs 186 steps/s); flushing them to zero costs nothing that matters.
    torch.set_flush_denormal(True)
    torch.manual_seed(args.seed)
    epochs = args.max_epochs or recipe.epochs
    target = args.target_acc if args.target_acc is not None else recipe.target_acc
    log_every = args.log_every or recipe.log_every
    phases = [
        p if args.batch_size is None else type(p)(p.start, p.size, args.batch_size) for p in recipe.phases
    ]
    ref_batch = recipe.phases[0].batch_size  # the batch max_lr is given for

    # --------------------------------------------------------------------------------- Data
    data = load_datasets(recipe.dataset, args.data)
    data.train.to(device)
    data.val.to(device)
    sampler = ResumableSampler(len(data.train), ddp.world_size, ddp.rank, args.seed)
    if min(sampler.steps_per_epoch(p.batch_size) for p in phases) < 1:
        raise TrainerError(
            f"{len(data.train)} training samples give no full batch of {max(p.batch_size for p in phases)} "
            f"per process on {ddp.world_size} process(es)",
            "pass a smaller --batch-size, or more data",
        )
    workers = args.workers if args.workers is not None else recipe.workers

    # -------------------------------------------------------------------------------- Model
    raw_model = recipe.model(data.num_classes).to(device)
    use_cuda = device.type == "cuda"
    if use_cuda and recipe.channels_last:
        raw_model = raw_model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(recipe, raw_model)
    bf16 = use_cuda and torch.cuda.is_bf16_supported()
    fp16 = use_cuda and not bf16  # V100 (compute capability 7.0) has no bf16: fp16 with a grad scaler
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16 if bf16 else torch.float16) if use_cuda else nullcontext()
    )
    scaler = torch.amp.GradScaler("cuda", enabled=fp16)
    model: nn.Module = torch.compile(raw_model) if args.compile else raw_model
    if ddp.enabled:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[ddp.local_rank] if use_cuda else None)
    criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    schedule = OneCycle(recipe.max_lr, recipe.div, recipe.final_div, recipe.pct_start)

    # ------------------------------------------------------------------------------- Resume
    mirror = None
    if args.mirror and ddp.master:
        from trainer.mirror import Mirror

        mirror = Mirror(args.mirror, run_dir, events, keep=args.keep)
    ckpt = Checkpointer(
        run_dir / "ckpt", events, keep=args.keep, on_complete=mirror.checkpoint if mirror else None
    )
    progress = Progress()
    resumed_from = resume(
        args, ddp, run_dir, events, raw_model, optimizer, scaler, progress, sampler, recipe, phases, epochs
    )
    events.write(
        "start",
        recipe=recipe.name,
        config={**recipe.to_config(), **_run_config(args, epochs, target, phases)},
        world_size=ddp.world_size,
        device=str(device),
        amp="bf16" if bf16 else "fp16" if fp16 else "off",
        code_hash=code_hash(),
        data=data.description,
        num_classes=data.num_classes,
        resumed_from=resumed_from,
        step=progress.step,
        epoch=progress.epoch,
        pid=os.getpid(),
    )
    log.info(
        f"{data.description}; {ddp.world_size} process(es) on {device}; {epochs} epochs; "
        f"target {recipe.target_metric} {target}" + (f"; resumed from {resumed_from}" if resumed_from else "")
    )

    def state_files() -> dict:
        return {
            "state.pt": {
                "model": raw_model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict(),
                "progress": asdict(progress),
                "world_size": ddp.world_size,
                "recipe": recipe.name,
            },
            "rng.pt": {"ranks": ddp.gather(rng_state())},
        }

    def save(blocking: bool) -> float:
        files = state_files()  # every rank takes part in the RNG gather; rank 0 writes
        return ckpt.save(progress.step, files, blocking=blocking) if ddp.master else 0.0

    def status(state: str, **extra) -> None:
        if ddp.master:
            write_status(
                run_dir / "status.json",
                {
                    "state": state,
                    "pid": os.getpid(),
                    "epochs": epochs,
                    "world_size": ddp.world_size,
                    **asdict(progress),
                    **extra,
                },
            )

    # ----------------------------------------------------------------------------- Training
    watcher = SpotWatcher(rank=ddp.rank).start()
    try:
        watcher.arm(
            sum(sampler.steps_per_epoch(_phase(recipe, phases, e, epochs).batch_size) for e in range(epochs))
        )
    except ValueError as err:
        raise TrainerError(str(err), f"unset {INJECT_ENV}, or give it as step:30 or 50%") from None
    last_save = time.monotonic()
    window_t, window_images, loss_sum = time.perf_counter(), 0, 0.0
    stop_reason = None
    model.train()
    while progress.epoch < epochs and stop_reason is None:
        phase = _phase(recipe, phases, progress.epoch, epochs)
        steps = sampler.steps_per_epoch(phase.batch_size)
        lr_scale = ddp.world_size * phase.batch_size / ref_batch  # linear scaling rule
        global_batch = phase.batch_size * ddp.world_size
        epoch_t = time.perf_counter()
        batches = sampler.batches(progress.epoch, phase.batch_size, start=progress.batch)
        loader = data.train.loader(
            batches,
            seed=args.seed,
            epoch=progress.epoch,
            first=progress.batch,
            rank=ddp.rank,
            size=phase.size,
            train=True,
            workers=workers,
        )
        for x, y in loader:
            lr, momentum = schedule((progress.epoch + progress.batch / steps) / epochs)
            set_lr_momentum(optimizer, lr * lr_scale, momentum)
            if use_cuda and recipe.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast:
                loss = criterion(model(x), y)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            progress.step += 1
            progress.batch += 1
            progress.images_seen += global_batch
            window_images += global_batch

            if progress.step % log_every == 0:
                loss_value = loss.item()
                loss_sum += loss_value
                now = time.perf_counter()
                events.write(
                    "step",
                    step=progress.step,
                    loss=loss_value,
                    lr=lr * lr_scale,
                    momentum=momentum,
                    img_per_s=round(window_images / (now - window_t), 1),
                    epoch=round(progress.epoch + progress.batch / steps, 4),
                )
                log.info(
                    f"step {progress.step:>7} | epoch {progress.epoch + progress.batch / steps:6.2f} | loss "
                    f"{loss_value:.4f} | lr {lr * lr_scale:.4g} | {window_images / (now - window_t):,.0f} img/s"
                )
                window_t, window_images = now, 0
                status("training")

            # One tiny all-reduce a step: a notice on any rank, or rank 0's checkpoint clock.
            due = ddp.master and time.monotonic() - last_save >= args.checkpoint_every
            watcher.check_step(progress.step)
            notice, due = ddp.agree(NOTICE_FLAG[watcher.notice.source] if watcher.notice else 0, int(due))
            if notice:
                return interrupted(ddp, watcher, save, mirror, events, status, progress, log, started)
            if due:
                save(blocking=False)
                last_save = time.monotonic()
            if args.max_steps and progress.step >= args.max_steps:
                stop_reason = "max_steps"
                break

        # ------------------------------------------------------------------ Evaluation
        epoch_done = progress.batch >= steps
        if epoch_done:
            events.write(
                "epoch",
                epoch=progress.epoch + 1,
                seconds=round(time.perf_counter() - epoch_t, 3),
                step=progress.step,
                size=phase.size,
                batch_size=global_batch,
            )
        every, last = args.eval_every, progress.epoch + 1 >= epochs
        if stop_reason or epoch_done and (last or every and (progress.epoch + 1) % every == 0):
            metrics = evaluate(model, data.val, ddp, recipe, phase.size, autocast, workers, args.seed)
            value = metrics.get(recipe.target_metric, metrics["top1"])
            progress.best = max(progress.best, value)
            events.write(
                "eval",
                epoch=progress.epoch + (1 if epoch_done else progress.batch / steps),
                step=progress.step,
                images_seen=progress.images_seen,
                **metrics,
            )
            log.info(
                f"eval after epoch {progress.epoch + 1}: "
                + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
            )
            if value >= target:
                stop_reason = "target"
        if epoch_done:
            progress.epoch += 1
            progress.batch = 0
        status("training")
        window_t, window_images = time.perf_counter(), 0  # img/s counts training only

    # --------------------------------------------------------------------------------- Done
    watcher.stop()
    save(blocking=True)  # the finished model, mirrored like any checkpoint
    if mirror is not None:
        mirror.close()
    ddp.barrier()
    reason = stop_reason or "schedule"
    events.write(
        "done",
        reason=reason,
        step=progress.step,
        epoch=progress.epoch,
        best=progress.best,
        target=target,
        seconds=round(time.time() - started, 3),
    )
    status("done", reason=reason)
    log.info(
        f"done ({reason}): best {recipe.target_metric} {progress.best:.4f} after {progress.step} steps, "
        f"{time.time() - started:.1f} s"
    )
    return EXIT_DONE


def interrupted(ddp, watcher, save, mirror, events, status, progress, log, started) -> int:
    """All ranks agreed to stop for a notice: checkpoint now, upload, say so, exit 75."""
    notices = [n for n in ddp.gather(watcher.notice) if n is not None]
    notice = notices[0]
    watcher.stop()
    blocked = save(blocking=True)
    uploaded = mirror.flush() if mirror is not None else None
    ddp.barrier()  # no rank exits before rank 0 has saved: torchrun stops the others when one exits
    events.write(
        "interruption",
        source=notice.source,
        notice_time=notice.notice_time,
        action=notice.action,
        step=progress.step,
        epoch=progress.epoch,
        checkpoint_s=round(blocked, 3),
        uploaded=uploaded,
        seconds=round(time.time() - started, 3),
    )
    status("interrupted", source=notice.source)
    if mirror is not None:
        mirror.close()
    log.info(
        f"interrupted ({notice.source}, notice time {notice.notice_time}): checkpoint at step {progress.step} "
        f"in {blocked:.2f} s; exit {EXIT_INTERRUPTED}"
    )
    return EXIT_INTERRUPTED


def _phase(recipe: Recipe, phases, epoch: int, epochs: int):
    return phases[recipe.phases.index(recipe.phase_at(epoch, epochs))]


def _run_config(args, epochs, target, phases) -> dict:
    return {
        "epochs": epochs,
        "target_acc": target,
        "phases": [asdict(p) for p in phases],
        "seed": args.seed,
        "checkpoint_every": args.checkpoint_every,
        "compile": args.compile,
        "max_steps": args.max_steps,
        "data": str(args.data) if args.data else None,
        "mirror": args.mirror,
        "resume": args.resume,
    }


def build_optimizer(recipe: Recipe, model: nn.Module) -> torch.optim.Optimizer:
    """SGD (Nesterov) or AdamW; BatchNorm parameters and biases get no weight decay when the recipe says so."""
    params = [p for p in model.parameters() if p.requires_grad]
    if recipe.no_decay_bn_bias:
        groups = [
            {"params": [p for p in params if p.ndim >= 2], "weight_decay": recipe.weight_decay},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
        ]
    else:
        groups = [{"params": params, "weight_decay": recipe.weight_decay}]
    lr, momentum = OneCycle(recipe.max_lr)(0.0)
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=(momentum, 0.99))
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=True)


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


def resume(
    args,
    ddp: Dist,
    run_dir: Path,
    events: EventLog,
    model,
    optimizer,
    scaler,
    progress: Progress,
    sampler: ResumableSampler,
    recipe: Recipe,
    phases,
    epochs: int,
) -> str | None:
    """Load what --resume names into everything; where it came from, or None for a fresh start."""
    found = find_checkpoint(args.resume, run_dir, args.mirror, events, ddp)
    if found is None:
        return None
    directory, files = found
    old_world = restore_state(files, model, optimizer, scaler, progress, ddp.rank)
    if old_world != ddp.world_size:  # another sharding of the epoch: keep the share of it that was done
        batch = _phase(recipe, phases, progress.epoch, epochs).batch_size
        old = ResumableSampler(sampler.num_samples, old_world, 0, sampler.seed)
        fraction = progress.batch / max(old.steps_per_epoch(batch), 1)
        progress.batch = math.floor(fraction * sampler.steps_per_epoch(batch))
        events.write(
            "warning",
            message=f"world size changed from {old_world} to {ddp.world_size}: resuming at "
            f"{fraction:.1%} of epoch {progress.epoch + 1}; the data order differs from an uninterrupted run",
        )
    return str(directory)


if __name__ == "__main__":
    sys.exit(main())
