"""Pre-resized copies of an ImageFolder, one per short side a recipe's phases need (fast.ai's DAWNBench
trick: decoding a small JPEG is several times faster than decoding the original and throwing most of it
away). Written once into the data volume; the trainer uses them when they are complete.

    python -m trainer.preresize --recipe imagenet --data /data/imagenet [--workers 32]

Idempotent: each file is written under a temporary name and renamed, so one that exists is whole and is
skipped; a copy is marked complete (DATA/resized-SIDE/.complete) only after every file is there. Run it
again after a crash and it finishes what is missing; run it on a finished copy and it writes nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from trainer import EXIT_BAD_INPUT, TrainerError
from trainer.folder import COMPLETE, RESIZED, needed_side

QUALITY = 90  # JPEG quality of the copies: visually lossless at these sizes, a quarter of the bytes


def sides_for(recipe) -> list[int]:
    """The short sides the recipe's phases and its last (FixRes) eval need, smallest first."""
    sizes = {p.size for p in recipe.phases} | {round(recipe.phases[-1].size * recipe.eval_size_scale)}
    return sorted({needed_side(s) for s in sizes})


def _resize_one(job: tuple[str, str, int]) -> bool:
    """Write one resized image; False when it was already there."""
    from PIL import Image

    src, dst, side = job
    if os.path.exists(dst):
        return False
    with Image.open(src) as image:
        image = image.convert("RGB")
        w, h = image.size
        scale = side / min(w, h)
        if scale < 1:  # never upscale: a small original is copied at its own size
            image = image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        tmp = f"{dst}.tmp{os.getpid()}"
        image.save(tmp, format="JPEG", quality=QUALITY)
    os.replace(tmp, dst)
    return True


def preresize(root: Path, sides: list[int], workers: int = 0) -> dict[int, int]:
    """Make DATA/resized-SIDE/{train,val} for each side; returns side -> files written this time."""
    from torchvision.datasets import ImageFolder

    written = {}
    for side in sides:
        copy = root / RESIZED.format(side=side)
        if (copy / COMPLETE).is_file():
            written[side] = 0
            continue
        jobs = [
            (path, str(copy / Path(path).relative_to(root)), side)
            for split in ("train", "val")
            for path, _ in ImageFolder(str(root / split)).samples
        ]
        if workers > 0:
            with ProcessPoolExecutor(workers) as pool:
                done = list(pool.map(_resize_one, jobs, chunksize=64))
        else:
            done = [_resize_one(job) for job in jobs]
        (copy / COMPLETE).write_text(f"{len(jobs)} files\n", encoding="utf-8")
        written[side] = sum(done)
    return written


def main(argv: list[str] | None = None) -> int:
    from trainer.recipes import get_recipe

    p = argparse.ArgumentParser(prog="python -m trainer.preresize", description=__doc__.split("\n")[0])
    p.add_argument("--recipe", default="imagenet", help="whose phases set the sides")
    p.add_argument("--data", required=True, type=Path, help="the ImageFolder root (train/ and val/)")
    p.add_argument(
        "--sides", type=int, nargs="*", help="short sides to make (default: what the recipe needs)"
    )
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = p.parse_args(argv)
    try:
        if not (args.data / "train").is_dir() or not (args.data / "val").is_dir():
            raise TrainerError(
                f"--data {args.data}: no train/ and val/ there", "point it at the ImageFolder root"
            )
        sides = args.sides or sides_for(get_recipe(args.recipe))
        for side, count in preresize(args.data, sides, args.workers).items():
            print(f"{args.data / RESIZED.format(side=side)}: {count} files written")
    except TrainerError as err:
        print(f"error: {err.message}\nhint: {err.hint}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


if __name__ == "__main__":
    sys.exit(main())
