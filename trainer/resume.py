"""Resuming: find the checkpoint --resume names (auto | PATH | s3://...), load it into the model,
optimizer, scaler, progress and RNGs, and say what differs from the run that saved it (world size,
precision). Writing and verifying checkpoints is trainer/checkpoint.py's."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from trainer import TrainerError
from trainer.args import Settings
from trainer.checkpoint import Progress, candidates, load_latest, set_rng_state, step_of
from trainer.data import ResumableSampler
from trainer.dist import Dist
from trainer.events import EventLog
from trainer.precision import Precision, load_scaler_state


def resume(
    args: argparse.Namespace,
    ddp: Dist,
    run_dir: Path,
    events: EventLog,
    stateful: dict[str, Any],
    precision: Precision,
    progress: Progress,
    sampler: ResumableSampler,
    settings: Settings,
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
        batch = settings.phase_at(progress.epoch).batch_size
        old = ResumableSampler(sampler.num_samples, old_world, 0, sampler.seed)
        fraction = progress.batch / max(old.steps_per_epoch(batch), 1)
        progress.batch = math.floor(fraction * sampler.steps_per_epoch(batch))
        events.write(
            "warning",
            message=f"world size changed from {old_world} to {ddp.world_size}: resuming at "
            f"{fraction:.1%} of epoch {progress.epoch + 1}; the data order differs from an uninterrupted run",
        )
    return str(directory)


def find_checkpoint(
    source: str | None, run_dir: Path, mirror: str | None, events: EventLog, ddp: Dist
) -> tuple[Path, dict[str, Any]] | None:
    """The checkpoint `source` names, loaded; None for a fresh start (no --resume, or auto with nothing)."""
    root = run_dir / "ckpt"
    if source is None:
        if root.is_dir() and candidates(root):
            raise TrainerError(
                f"--run-dir {run_dir} already holds checkpoints",
                "pass --resume auto to continue that run, or a new --run-dir",
            )
        return None
    if ddp.local_rank == 0:  # one download per machine; then every rank loads the local copy
        remote = source if source.startswith("s3://") else None
        if source == "auto" and mirror and not (root.is_dir() and candidates(root)):
            remote = mirror
        if remote is not None:
            from trainer.mirror import restore

            restore(remote, root, events)
    ddp.barrier()
    prefer = None
    if source != "auto" and not source.startswith("s3://"):
        path = Path(source)
        if not path.exists():
            raise TrainerError(
                f"--resume {source}: no such file or directory",
                "give a checkpoint directory, a run directory, auto, or s3://...",
            )
        if step_of(path.name) is not None:  # exactly that checkpoint (older ones beside it if it is damaged)
            root, prefer = path.parent, path.name
        else:
            root = path / "ckpt" if (path / "ckpt").is_dir() else path
    found = load_latest(
        root, events if ddp.master else EventLog(None), map_location=ddp.device, prefer=prefer
    )
    if found is None and source != "auto":
        raise TrainerError(
            f"--resume {source}: no intact checkpoint there",
            "check the path, or pass --resume auto to start fresh",
        )
    if found is None:
        events.write(
            "warning", message="--resume auto: no checkpoint to resume from, starting fresh", resume="auto"
        )
    return found


def restore_state(files: dict[str, Any], model, optimizer, scaler, progress: Progress, rank: int) -> int:
    """Put a loaded checkpoint back into the model, optimizer, scaler, progress and this rank's RNGs;
    returns the world size it was saved with."""
    state = files["state.pt"]
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    load_scaler_state(scaler, state.get("scaler"))  # across precisions: an empty state is no error
    for key, value in state["progress"].items():
        setattr(progress, key, value)
    ranks = files["rng.pt"]["ranks"]
    set_rng_state(ranks[rank % len(ranks)])
    return state["world_size"]
