"""`nodes: N` with N > 1 and --detach is refused after the plan is shown and before anything launches
(spotrain/nodes.py says what is built); attached, it passes (tests/multinode/test_two_node_runs.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from spotrain.config import RunSpec
from spotrain.errors import SpotrainError
from spotrain.nodes import nodes_refused
from tests.e2e.cli import spotrain
from tests.e2e.edges import refused


def test_one_node_passes_either_way() -> None:
    for detach in (False, True):
        nodes_refused(RunSpec(recipe="digits", nodes=1), detach=detach)


def test_n_nodes_attached_pass_and_detached_are_refused_with_a_hint() -> None:
    nodes_refused(RunSpec(recipe="digits", nodes=2), detach=False)
    with pytest.raises(SpotrainError) as err:
        nodes_refused(RunSpec(recipe="digits", nodes=2), detach=True)
    assert "--nodes 2 with --detach" in err.value.message and "drop --detach" in err.value.hint


def test_n_nodes_of_your_own_command_are_refused_with_a_hint() -> None:
    """The nodes get the bundled trainer's torchrun form; a user's `run:` would not get its rendezvous."""
    with pytest.raises(SpotrainError) as err:
        nodes_refused(RunSpec(nodes=2, run="python train.py"), detach=False)
    assert "--nodes 2 with your own command" in err.value.message and "--nodes 1" in err.value.hint


def test_a_two_node_detached_dry_run_shows_its_plan_then_launches_nothing(tmp_path: Path) -> None:
    spec = tmp_path / "run.yaml"
    spec.write_text("recipe: digits\nnodes: 2\n")
    out = spotrain("launch", "-f", str(spec), "--dry-run", "--detach", "-y", home=tmp_path)
    refused(out, "--nodes 2 with --detach", "drop --detach")
    assert "2 x " in out.stdout  # the plan came first, with both nodes' price
    assert not list((tmp_path / "dry-run" / "instances").glob("i-*"))


def test_following_a_nodes_log_is_refused_with_what_to_follow(tmp_path: Path) -> None:
    from spotrain.store import Store

    with Store.open(tmp_path / "dry-run") as store:
        store.create_run("two-nodes", {"recipe": "digits", "nodes": 2}, dry_run=True)
    out = spotrain("logs", "two-nodes", "--node", "1", "-f", home=tmp_path)
    refused(out, "--follow with --node 1", "follow node 0's")
