"""Resuming: load what --resume names into the model, optimizer, scaler, progress and RNGs, and say what
differs from the run that saved it (world size, precision)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from trainer.checkpoint import Progress, find_checkpoint, restore_state
from trainer.data import ResumableSampler
from trainer.dist import Dist
from trainer.events import EventLog
from trainer.precision import Precision
from trainer.recipes import Phase, Recipe


def phase_for(recipe: Recipe, phases: list[Phase], epoch: int, epochs: int) -> Phase:
    """The (possibly --batch-size overridden) phase an epoch falls in."""
    return phases[recipe.phases.index(recipe.phase_at(epoch, epochs))]


def resume(
    args: argparse.Namespace,
    ddp: Dist,
    run_dir: Path,
    events: EventLog,
    stateful: dict[str, Any],
    precision: Precision,
    progress: Progress,
    sampler: ResumableSampler,
    recipe: Recipe,
    phases: list[Phase],
    epochs: int,
) -> str | None:
    """Load what --resume names into everything; where it came from, or None for a fresh start.
    `stateful`: the model, optimizer and scaler, and any other object with a state (None: absent)."""
    found = find_checkpoint(args.resume, run_dir, args.mirror, events, ddp)
    if found is None:
        return None
    directory, files = found
    model, optimizer, scaler = stateful["model"], stateful["optimizer"], stateful["scaler"]
    old_world = restore_state(files, model, optimizer, scaler, progress, ddp.rank)
    for name, obj in stateful.items():
        if name not in ("model", "optimizer", "scaler") and obj is not None and name in files["state.pt"]:
            obj.load_state_dict(files["state.pt"][name])
    saved = files["state.pt"].get("precision")  # absent in checkpoints older than this field
    if saved is not None and saved != precision.name:  # e.g. saved on an A100 (bf16), resumed on a V100
        scale = "a fresh loss scale" if scaler.is_enabled() else "its loss scale unused"
        events.write(
            "warning",
            message=f"checkpoint saved under {saved}, resuming under {precision.name} ({precision.why}): {scale}",
        )
    if old_world != ddp.world_size:  # another sharding of the epoch: keep the share of it that was done
        batch = phase_for(recipe, phases, progress.epoch, epochs).batch_size
        old = ResumableSampler(sampler.num_samples, old_world, 0, sampler.seed)
        fraction = progress.batch / max(old.steps_per_epoch(batch), 1)
        progress.batch = math.floor(fraction * sampler.steps_per_epoch(batch))
        events.write(
            "warning",
            message=f"world size changed from {old_world} to {ddp.world_size}: resuming at "
            f"{fraction:.1%} of epoch {progress.epoch + 1}; the data order differs from an uninterrupted run",
        )
    return str(directory)
