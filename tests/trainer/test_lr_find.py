from __future__ import annotations

import csv
import math
import re

from trainer.recipes import get_recipe


def test_lr_find_on_digits_suggests_near_the_recipe_max_lr(trainer, tmp_path) -> None:
    out_csv = tmp_path / "lr.csv"
    out = trainer.run("--recipe", "digits", "--out", str(out_csv), module="trainer.lr_find")
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(out_csv.open()))
    lrs = [float(r["lr"]) for r in rows]
    assert len(rows) >= 50 and all(a < b for a, b in zip(lrs, lrs[1:], strict=False))  # exponential sweep
    suggested = float(re.search(r"suggested max LR: ([0-9.e+-]+)", out.stdout).group(1))
    recipe_lr = get_recipe("digits").max_lr
    assert recipe_lr / 10 <= suggested <= recipe_lr * 10, (suggested, recipe_lr)


def test_lr_find_refuses_a_backwards_range(trainer, tmp_path) -> None:
    out = trainer.run("--recipe", "digits", "--start", "1", "--end", "0.1", module="trainer.lr_find")
    assert out.returncode == 2 and "--start 1.0 --end 0.1" in out.stderr


def test_centred_estimate_finds_the_minimum_an_ema_passes() -> None:
    """A loss falling then rising (a V at step 60, with batch-to-batch jitter): the centred average's
    minimum is at the V; an EMA's comes later, at a higher LR, because it trails the loss."""
    from trainer.lr_find import BETA, suggest

    losses = [abs(i - 60) / 10 + (0.03 if i % 2 else -0.03) for i in range(100)]
    rows = [{"step": i, "lr": 1e-4 * 1.1**i, "loss": v} for i, v in enumerate(losses)]
    assert suggest(rows) == rows[60]["lr"]
    avg, ema = 0.0, []
    for i, v in enumerate(losses):
        avg = BETA * avg + (1 - BETA) * v
        ema.append(avg / (1 - BETA ** (i + 1)))
    assert min(range(100), key=ema.__getitem__) > 60  # what the old suggestion picked


def test_lr_find_runs_at_the_global_batch_of_all_ranks(trainer, tmp_path) -> None:
    out_csv = tmp_path / "lr.csv"
    out = trainer.run(
        *("--standalone", "--nproc_per_node=2", "-m", "trainer.lr_find"),
        *("--recipe", "digits", "--steps", "20", "--out", str(out_csv)),
        module="trainer.launch",
        timeout=180,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    at_global = re.search(
        r"suggested LR at global batch (\d+) \((\d) process\(es\)\): ([0-9.e+-]+)", out.stdout
    )
    assert at_global and at_global.group(1) == "128" and at_global.group(2) == "2"  # 64 per rank x 2
    as_recipe = float(re.search(r"suggested max LR: ([0-9.e+-]+)", out.stdout).group(1))
    assert math.isclose(as_recipe, float(at_global.group(3)) * 64 / 128, rel_tol=1e-3)  # back to batch 64
    rows = list(csv.DictReader(out_csv.open()))
    assert 10 <= len(rows) <= 20 and out.stdout.count("suggested max LR") == 1  # rank 0 alone reports
