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
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from trainer import EXIT_DONE, TrainerError
from trainer.args import check_args, parse_args
from trainer.checkpoint import Checkpointer, Progress, rng_state
from trainer.data import ResumableSampler, load_datasets
from trainer.dist import Dist
from trainer.evaluate import evaluate
from trainer.events import EventLog, write_status
from trainer.interrupt import interrupted
from trainer.lookahead import Lookahead
from trainer.precision import choose_precision, compile_model, configure_backends
from trainer.recipes import Recipe, get_recipe
from trainer.resume import phase_for, resume
from trainer.schedule import OneCycle, set_lr_momentum
from trainer.spot import INJECT_ENV, SpotWatcher
from trainer.util import code_hash, make_logger

# Agreed by all-reduce MAX; the value says where the notice came from.
NOTICE_FLAG = {"imds": 1, "sigterm": 2, "injected": 3}


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
    if recipe.translate is not None:  # in-memory sets: the recipe's augmentation over the loader's
        data.train.crop_pad = recipe.translate
    if recipe.flip is not None:
        data.train.flip = recipe.flip
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
    if recipe.prepare is not None:  # e.g. a whitening layer computed from training images
        recipe.prepare(raw_model, data.train)
    use_cuda = device.type == "cuda"
    if use_cuda and recipe.channels_last:
        raw_model = raw_model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(recipe, raw_model)
    precision = choose_precision(device)  # bf16 from compute capability 8.0, fp16 + scaler on 7.x
    configure_backends(device)  # cudnn.benchmark, TF32
    autocast, scaler = precision.autocast(), precision.scaler()
    if args.compile:
        compile_model(raw_model, phases)
    model: nn.Module = raw_model
    if ddp.enabled:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[ddp.local_rank] if use_cuda else None)
    criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    schedule = OneCycle(
        recipe.max_lr, recipe.div, recipe.final_div, recipe.pct_start, recipe.moms, recipe.schedule
    )
    lookahead = (
        Lookahead(raw_model, recipe.lookahead_every, recipe.lookahead_decay)
        if recipe.lookahead_every
        else None
    )
    eval_every = args.eval_every if args.eval_every is not None else recipe.eval_every

    # ------------------------------------------------------------------------------- Resume
    mirror = None
    if args.mirror and ddp.master:
        from trainer.mirror import Mirror

        mirror = Mirror(args.mirror, run_dir, events, keep=args.keep)
    ckpt = Checkpointer(
        run_dir / "ckpt", events, keep=args.keep, on_complete=mirror.checkpoint if mirror else None
    )
    progress = Progress()
    stateful = {"model": raw_model, "optimizer": optimizer, "scaler": scaler, "lookahead": lookahead}
    resumed_from = resume(
        args, ddp, run_dir, events, stateful, precision, progress, sampler, recipe, phases, epochs
    )
    events.write(
        "start",
        recipe=recipe.name,
        config={**recipe.to_config(), **_run_config(args, epochs, target, phases)},
        world_size=ddp.world_size,
        device=str(device),
        amp=precision.name if precision.dtype is not None else "off",
        precision=precision.name,
        precision_why=precision.why,
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
        f"target {recipe.target_metric} {target}; {precision.name} ({precision.why})"
        + (f"; resumed from {resumed_from}" if resumed_from else "")
    )

    def state_files() -> dict:
        return {
            "state.pt": {
                "model": raw_model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict(),  # {} when the scaler is off (bf16, fp32)
                "precision": precision.name,
                **({"lookahead": lookahead.state_dict()} if lookahead is not None else {}),
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
            sum(
                sampler.steps_per_epoch(phase_for(recipe, phases, e, epochs).batch_size)
                for e in range(epochs)
            )
        )
    except ValueError as err:
        raise TrainerError(str(err), f"unset {INJECT_ENV}, or give it as step:30 or 50%") from None
    last_save = time.monotonic()
    window_t, window_images, loss_sum = time.perf_counter(), 0, 0.0
    stop_reason = None
    model.train()
    while progress.epoch < epochs and stop_reason is None:
        phase = phase_for(recipe, phases, progress.epoch, epochs)
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
            at = (progress.epoch + progress.batch / steps) / epochs  # progress through the schedule
            lr, momentum = schedule(at)
            set_lr_momentum(optimizer, lr * lr_scale, momentum)
            if use_cuda and recipe.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            loss = train_step(model, x, y, criterion, optimizer, autocast, scaler)
            if lookahead is not None:
                lookahead.step(raw_model, progress.step + 1, at)
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
        final = stop_reason is not None or epoch_done and progress.epoch + 1 >= epochs
        if final or epoch_done and eval_every and (progress.epoch + 1) % eval_every == 0:
            if final and lookahead is not None:
                lookahead.finish(raw_model)  # the weights become their average
            # The last eval with the recipe's test-time augmentation, at its test size (FixRes).
            size = round(phase.size * recipe.eval_size_scale) if final else phase.size
            tta = recipe.tta if final else 0
            metrics = evaluate(model, data.val, ddp, recipe, size, autocast, workers, args.seed, tta)
            value = metrics.get(recipe.target_metric, metrics["top1"])
            progress.best = max(progress.best, value)
            events.write(
                "eval",
                epoch=progress.epoch + (1 if epoch_done else progress.batch / steps),
                step=progress.step,
                images_seen=progress.images_seen,
                size=size,
                tta=tta,
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


if __name__ == "__main__":
    sys.exit(main())
