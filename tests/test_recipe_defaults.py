"""The controller's copy of each recipe's defaults (spotrain/catalog.py: it plans a run and never imports
the trainer) agrees with the trainer's own recipe (trainer/recipes/: the truth for training).

A value changed on one side alone fails here. What the trainer cannot know before it reads the data
(a data set's size on the instance, FLOPs a sample) is the catalog's alone, except where the trainer
brings the data itself (digits)."""

from __future__ import annotations

import pytest

from spotrain import catalog
from trainer import TrainerError
from trainer.datasets import load_datasets
from trainer.recipes import get_recipe, known_recipes

PLANNED = sorted(catalog.RECIPES)  # the recipes the controller can launch


def test_both_sides_know_the_same_recipes() -> None:
    assert known_recipes() == PLANNED


@pytest.mark.parametrize("name", PLANNED)
def test_schedule_length_and_target_agree(name: str) -> None:
    planned, trained = catalog.recipe(name), get_recipe(name)
    assert planned.name == trained.name
    assert planned.epochs == trained.epochs
    assert planned.target_metric == trained.target_metric
    assert planned.target == trained.target_acc


def _trainer_loads_without_data(dataset: str):
    """The trainer's data sets when it is given no --data, or None where it refuses (exit 2)."""
    try:
        return load_datasets(dataset, None)
    except TrainerError:
        return None


@pytest.mark.parametrize("name", PLANNED)
def test_the_controller_asks_for_data_where_the_trainer_needs_it(name: str) -> None:
    """A recipe the trainer refuses without --data is refused by the controller before launch (an
    instance already billed would otherwise exit 2), and only such a recipe."""
    loaded = _trainer_loads_without_data(get_recipe(name).dataset)
    assert (name in catalog.DATA_LAYOUT) == (loaded is None)
    if loaded is not None:  # it brings its own data: the catalog plans with its true size
        assert catalog.recipe(name).samples_per_epoch == len(loaded.train)
