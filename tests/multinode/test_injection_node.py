"""`--inject-interruption AT@R` (issue 16, step 3): the notice posted on node R only. The node must be
one of the run's, refused by name before anything launches; without @R it is node 0, as before."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from spotrain.config import load_spec
from spotrain.errors import SpotrainError
from spotrain.trainer_watch import TrainerWatch
from tests.e2e.cli import spotrain


def _spec(**flags):
    return load_spec(None, {"recipe": "digits", **flags}, {})


def test_a_node_of_the_run_is_accepted_in_each_form() -> None:
    s = _spec(nodes=2, inject_interruptions="step:30@1,50%@0,20s")
    assert s.inject_interruptions == ["step:30@1", "50%@0", "20s"]


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (
            {"nodes": 2, "inject_interruptions": "step:30@2"},
            "step:30@2 names node 2, but the run has 2 nodes",
        ),
        ({"inject_interruptions": "step:30@1"}, "step:30@1 names node 1, but the run has 1 node (node 0)"),
        ({"nodes": 2, "inject_interruptions": "step:30@x"}, "step:30@x is not allowed"),
        ({"nodes": 2, "inject_interruptions": "step:30@"}, "step:30@ is not allowed"),
    ],
)
def test_a_node_outside_the_run_is_refused_by_name(flags: dict, named: str) -> None:
    with pytest.raises(SpotrainError) as e:
        _spec(**flags)
    assert named in e.value.message and e.value.hint


def test_a_share_on_a_node_is_still_refused_for_the_users_own_command(tmp_path: Path) -> None:
    with pytest.raises(SpotrainError, match="a share"):
        load_spec(None, {"run": "python x.py", "workdir": str(tmp_path), "inject_interruptions": "50%@0"}, {})


def test_each_node_gets_only_its_own_injection_without_its_node() -> None:
    def injection(at: str, node: int, *, cloud: str = "dry-run", number: int = 1):
        watch = SimpleNamespace(cloud=SimpleNamespace(name=cloud))
        run = SimpleNamespace(spec=SimpleNamespace(inject_interruptions=[at]))
        return TrainerWatch._injection(watch, run, SimpleNamespace(number=number), node)

    assert (injection("step:30@1", 0), injection("step:30@1", 1)) == (None, "step:30")
    assert (injection("step:30", 0), injection("step:30", 1)) == ("step:30", None)  # no @R: node 0
    assert injection("step:30@0", 0, cloud="aws") is None  # real AWS: never injected
    assert injection("step:30", 0, number=2) is None  # one an attempt, in order


def test_launch_refuses_a_node_the_run_lacks_before_anything_starts(tmp_path: Path) -> None:
    out = spotrain(
        "launch", "--dry-run", "--recipe", "digits", "--inject-interruption", "step:30@1", "-y", home=tmp_path
    )
    assert out.returncode == 2, out.stdout + out.stderr
    assert "step:30@1 names node 1, but the run has 1 node" in out.stderr + out.stdout
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "dry-run" / "instances").exists()
