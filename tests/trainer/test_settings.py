"""Settings: a recipe's defaults, each overridden by its flag; the phase an epoch falls in."""

from __future__ import annotations

import dataclasses

from trainer.args import Settings, parse_args
from trainer.recipes import Phase, get_recipe


def test_the_recipe_decides_what_no_flag_gives() -> None:
    recipe = get_recipe("imagenet")
    s = Settings.resolve(parse_args(["--recipe", "imagenet", "--run-dir", "r"]), recipe)
    assert (s.epochs, s.target, s.log_every, s.eval_every, s.workers) == (
        recipe.epochs,
        recipe.target_acc,
        recipe.log_every,
        recipe.eval_every,
        recipe.workers,
    )
    assert s.phases == recipe.phases and s.ref_batch == recipe.phases[0].batch_size


def test_flags_override_and_batch_size_sets_every_phase() -> None:
    recipe = get_recipe("imagenet")
    argv = ["--recipe", "imagenet", "--run-dir", "r", "--max-epochs", "20", "--batch-size", "32"]
    argv += ["--target-acc", "0.5", "--eval-every", "0", "--workers", "0", "--log-every", "7"]
    s = Settings.resolve(parse_args(argv), recipe)
    assert (s.epochs, s.target, s.log_every, s.eval_every, s.workers) == (20, 0.5, 7, 0, 0)
    assert [p.batch_size for p in s.phases] == [32] * len(recipe.phases)
    assert [p.size for p in s.phases] == [p.size for p in recipe.phases]
    assert s.ref_batch == recipe.phases[0].batch_size  # max_lr stays given for the recipe's batch


def test_phase_at_follows_the_share_of_the_schedule() -> None:
    phases = (Phase(0.0, 8, 64), Phase(0.5, 16, 32), Phase(0.9, 24, 16))
    recipe = dataclasses.replace(get_recipe("digits"), phases=phases)
    s = Settings.resolve(parse_args(["--recipe", "digits", "--run-dir", "r", "--max-epochs", "10"]), recipe)
    assert [s.phase_at(e) for e in range(10)] == [phases[0]] * 5 + [phases[1]] * 4 + [phases[2]]
