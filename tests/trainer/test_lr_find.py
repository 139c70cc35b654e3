from __future__ import annotations

import csv
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
