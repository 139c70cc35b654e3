"""The plan shown before a multi-node launch says N instances and N x the spot price (issue 16)."""

from __future__ import annotations

import pytest
from rich.console import Console

from spotrain import render
from spotrain.config import RunSpec
from spotrain.formats import usd_per_hour
from tests.aws.aws_fakes import P3
from tests.aws.test_launch import world as world  # the fixture
from tests.aws.test_volumes import make


def _text(table) -> str:
    console = Console(width=400, record=True)
    console.print(table)
    return console.export_text()


@pytest.mark.parametrize("nodes", [1, 4])
def test_the_plan_table_shows_n_instances_at_n_times_the_price(world, nodes: int) -> None:
    spec = RunSpec(recipe="digits", instance=P3, nodes=nodes)
    shown = make(world, spec)
    one = shown.zone.usd_per_hour
    assert shown.estimate.usd_per_hour == pytest.approx(nodes * one)
    text = _text(render.plan_table(spec, shown))
    if nodes == 1:
        assert f"│ {P3} in" in text and " x that" not in text
    else:
        assert f"│ 4 x {P3} in" in text
        assert f"4 x that: {usd_per_hour(4 * one)}" in text
