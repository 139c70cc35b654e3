"""A run after setup: the net, its data and progress, and everything the run writes for the controller
(events.jsonl, status.json) and for people (train.log): the `start`, `step`, `eval` and `done` events,
checkpoints on the clock, and the stop for a spot notice. Rank 0 writes; every rank steps."""

from __future__ import annotations

import argparse
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from trainer import EXIT_DONE, TrainerError
from trainer.args import Settings
from trainer.checkpoint import Checkpointer, Progress, rng_state, step_dir_name
from trainer.data import Datasets, ResumableSampler
from trainer.dist import Dist
from trainer.evaluate import evaluate
from trainer.events import EventLog, write_status
from trainer.interrupt import interrupted
from trainer.net import Net
from trainer.recipes import Phase, Recipe
from trainer.spot import SpotWatcher
from trainer.util import code_hash

if TYPE_CHECKING:  # set_up imports them only for --mirror, --tensorboard or --wandb
    from trainer.metrics_out import MetricsOut
    from trainer.mirror import Mirror

# Agreed by all-reduce MAX; the value says where the notice came from.
NOTICE_FLAG = {"imds": 1, "sigterm": 2, "injected": 3}


@dataclass
class Throughput:
    """Training images since `since` (perf_counter): the img/s of `step` events counts training only."""

    since: float = field(default_factory=time.perf_counter)
    images: int = 0

    def per_s(self, now: float) -> float:
        return self.images / (now - self.since)


@dataclass
class Run:
    """A run after setup: what the loop steps, and the files it writes. Rank 0 writes; every rank steps."""

    args: argparse.Namespace
    recipe: Recipe
    settings: Settings
    ddp: Dist
    run_dir: Path
    events: EventLog
    log: logging.Logger
    data: Datasets
    sampler: ResumableSampler
    net: Net
    ckpt: Checkpointer
    mirror: Mirror | None  # on rank 0 with --mirror
    progress: Progress
    started: float  # time.time() at setup
    last_save: float = 0.0  # time.monotonic() of the last checkpoint: the loop starts the clock
    rebalanced: bool = False  # checkpointed for the rebalance recommendation (EC2 posts one, at most)
    metrics: MetricsOut | None = None  # rank 0's TensorBoard / W&B writers, when asked for

    def announce(self, resumed_from: str | None) -> None:
        """The `start` event (the full config, the code's hash) and its line in train.log."""
        s, p, net, data = self.settings, self.progress, self.net, self.data
        self.events.write(
            "start",
            recipe=self.recipe.name,
            config={**self.recipe.to_config(), **_run_config(self.args, s)},
            world_size=self.ddp.world_size,
            device=str(self.ddp.device),
            amp=net.precision.name if net.precision.dtype is not None else "off",
            precision=net.precision.name,
            precision_why=net.precision.why,
            code_hash=code_hash(),
            data=data.description,
            num_classes=data.num_classes,
            resumed_from=resumed_from,
            step=p.step,
            epoch=p.epoch,
            pid=os.getpid(),
        )
        self.log.info(
            f"{data.description}; {self.ddp.world_size} process(es) on {self.ddp.device}; {s.epochs} epochs; "
            f"target {self.recipe.target_metric} {s.target}; {net.precision.name} ({net.precision.why})"
            + (f"; resumed from {resumed_from}" if resumed_from else "")
        )

    def state_files(self) -> dict:
        net = self.net
        return {
            "state.pt": {
                "model": net.raw.state_dict(),
                "optimizer": net.optimizer.state_dict(),
                "scaler": net.scaler.state_dict(),  # {} when the scaler is off (bf16, fp32)
                "precision": net.precision.name,
                **({"lookahead": net.lookahead.state_dict()} if net.lookahead is not None else {}),
                "progress": asdict(self.progress),
                "world_size": self.ddp.world_size,
                "recipe": self.recipe.name,
            },
            "rng.pt": {"ranks": self.ddp.gather(rng_state())},
        }

    def save(self, blocking: bool) -> float:
        files = self.state_files()  # every rank takes part in the RNG gather; rank 0 writes
        return self.ckpt.save(self.progress.step, files, blocking=blocking) if self.ddp.master else 0.0

    def status(self, state: str, **extra) -> None:
        if self.ddp.master:
            write_status(
                self.run_dir / "status.json",
                {
                    "state": state,
                    "pid": os.getpid(),
                    "epochs": self.settings.epochs,
                    "world_size": self.ddp.world_size,
                    **asdict(self.progress),
                    **extra,
                },
            )

    def arm_watcher(self) -> SpotWatcher:
        """The spot notice watcher, started, with any injected notice's step set."""
        watcher = SpotWatcher(rank=self.ddp.rank).start()
        s = self.settings
        try:
            watcher.arm(sum(self.sampler.steps_per_epoch(s.phase_at(e).batch_size) for e in range(s.epochs)))
        except ValueError as err:
            raise TrainerError(str(err), "unset it, or give it as step:30 or 50%") from None
        return watcher

    def epoch_batches(self, phase: Phase):
        """The rest of the current epoch's batches, from where progress stands."""
        p = self.progress
        batches = self.sampler.batches(p.epoch, phase.batch_size, start=p.batch)
        return self.data.train.loader(
            batches,
            seed=self.args.seed,
            epoch=p.epoch,
            first=p.batch,
            rank=self.ddp.rank,
            size=phase.size,
            train=True,
            workers=self.settings.workers,
        )

    def log_step(self, loss: float, lr: float, momentum: float, steps: int, throughput: Throughput) -> None:
        """A `step` event and its train.log line; the throughput window starts again."""
        p, now = self.progress, time.perf_counter()
        epoch = p.epoch + p.batch / steps
        rate = throughput.per_s(now)
        self.events.write(
            "step",
            step=p.step,
            loss=loss,
            lr=lr,
            momentum=momentum,
            img_per_s=round(rate, 1),
            epoch=round(epoch, 4),
        )
        if self.metrics is not None:
            self.metrics.step(p.step, loss, lr, momentum, round(rate, 1))
        self.log.info(
            f"step {p.step:>7} | epoch {epoch:6.2f} | loss {loss:.4f} | lr {lr:.4g} | {rate:,.0f} img/s"
        )
        throughput.since, throughput.images = now, 0
        self.status("training")

    def notice_or_checkpoint(self, watcher: SpotWatcher) -> bool:
        """One tiny all-reduce a step: True when any rank saw a notice (all stop); otherwise a checkpoint
        now when any rank saw a rebalance recommendation (once), or in the background when rank 0's
        clock says one is due. Agreed, so every rank saves at the same step (the save gathers RNG)."""
        due = self.ddp.master and time.monotonic() - self.last_save >= self.args.checkpoint_every
        watcher.check_step(self.progress.step)
        seen = watcher.rebalance is not None and not self.rebalanced
        notice, rebalance, due = self.ddp.agree(
            NOTICE_FLAG[watcher.notice.source] if watcher.notice else 0, int(seen), int(due)
        )
        if notice:
            return True  # the notice's own checkpoint covers a recommendation that came with it
        if rebalance:
            self.checkpoint_for_rebalance(watcher)
        elif due:
            self.save(blocking=False)
            self.last_save = time.monotonic()
        return False

    def checkpoint_for_rebalance(self, watcher: SpotWatcher) -> None:
        """EC2 says the instance is at elevated risk of interruption: save now, blocking, so the
        `rebalance` event names a complete checkpoint (mirrored as any other), and train on."""
        found = self.ddp.gather(watcher.rebalance)
        recommendation = next(r for r in found if r is not None)
        self.rebalanced = True
        seconds = self.save(blocking=True)
        self.last_save = time.monotonic()
        step = self.progress.step
        self.events.write(
            "rebalance",
            source=recommendation.source,
            notice_time=recommendation.notice_time,
            step=step,
            epoch=self.progress.epoch,
            checkpoint=step_dir_name(step),
            checkpoint_s=round(seconds, 3),
        )
        self.log.info(
            f"rebalance recommendation ({recommendation.source}, {recommendation.notice_time}): "
            f"checkpoint at step {step} in {seconds:.2f} s; training goes on"
        )
        watcher.hold_after_rebalance()  # the dry-run's Capacity Rebalancing: its replacement warms first

    def close_metrics(self) -> None:
        """Before the mirror's last upload of the logs, which carries the event files too."""
        if self.metrics is not None:
            self.metrics.close()

    def stop_for_notice(self, watcher: SpotWatcher) -> int:
        self.close_metrics()
        return interrupted(
            self.ddp,
            watcher,
            self.save,
            self.mirror,
            self.events,
            self.status,
            self.progress,
            self.log,
            self.started,
        )

    def run_eval(self, phase: Phase, steps: int, epoch_done: bool, final: bool) -> float:
        """An eval at the phase's size, as an `eval` event; the last one with the recipe's test-time
        augmentation at its test size (FixRes), after lookahead's average. Returns the target metric."""
        recipe, net, p = self.recipe, self.net, self.progress
        if final and net.lookahead is not None:
            net.lookahead.finish(net.raw)  # the weights become their average
        size = round(phase.size * recipe.eval_size_scale) if final else phase.size
        tta = recipe.tta if final else 0
        metrics = evaluate(
            net.model,
            self.data.val,
            self.ddp,
            recipe,
            size,
            net.autocast,
            self.settings.workers,
            self.args.seed,
            tta,
        )
        value = metrics.get(recipe.target_metric, metrics["top1"])
        p.best = max(p.best, value)
        self.events.write(
            "eval",
            epoch=p.epoch + (1 if epoch_done else p.batch / steps),
            step=p.step,
            images_seen=p.images_seen,
            size=size,
            tta=tta,
            **metrics,
        )
        if self.metrics is not None:
            self.metrics.eval(p.step, metrics, p.epoch + (1 if epoch_done else p.batch / steps))
        self.log.info(
            f"eval after epoch {p.epoch + 1}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        )
        return value

    def finish(self, stop_reason: str | None) -> int:
        """The finished model saved (and mirrored like any checkpoint), then the `done` event."""
        p = self.progress
        self.save(blocking=True)
        self.close_metrics()
        if self.mirror is not None:
            self.mirror.close()
        self.ddp.barrier()
        reason = stop_reason or "schedule"
        seconds = time.time() - self.started
        self.events.write(
            "done",
            reason=reason,
            step=p.step,
            epoch=p.epoch,
            best=p.best,
            target=self.settings.target,
            seconds=round(seconds, 3),
        )
        self.status("done", reason=reason)
        self.log.info(
            f"done ({reason}): best {self.recipe.target_metric} {p.best:.4f} after {p.step} steps, {seconds:.1f} s"
        )
        return EXIT_DONE


def _run_config(args: argparse.Namespace, settings: Settings) -> dict:
    return {
        "epochs": settings.epochs,
        "target_acc": settings.target,
        "phases": [asdict(p) for p in settings.phases],
        "seed": args.seed,
        "checkpoint_every": args.checkpoint_every,
        "compile": args.compile,
        "max_steps": args.max_steps,
        "data": str(args.data) if args.data else None,
        "mirror": args.mirror,
        "resume": args.resume,
    }
