"""`run`, `setup` and `workdir` in a spec: what they become, and each bad value named with what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from spotrain import catalog
from spotrain.config import load_spec
from spotrain.errors import SpotrainError
from spotrain.plan import check_includes, estimate


def test_a_command_run_has_the_command_recipe_and_syncs_where_launch_runs(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    spec = load_spec(None, {"run": "python train.py", "dry_run": True}, env={})
    assert (spec.recipe, spec.instance, spec.workdir) == ("command", "g5.xlarge", tmp_path)


def test_a_spec_files_workdir_is_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "proj").mkdir()
    file = tmp_path / "run.yaml"
    file.write_text(
        "run: |\n  cd src\n  exec python train.py\nsetup: pip install -r req.txt\nworkdir: proj\n"
    )
    spec = load_spec(file, {}, env={})
    assert spec.workdir == tmp_path / "proj" and spec.run.startswith("cd src\n")
    assert spec.setup == "pip install -r req.txt"


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        ({"run": "python t.py", "recipe": "digits"}, "recipe: digits and run are both given"),
        ({"recipe": "digits", "setup": "pip install x"}, "setup: given without run"),
        ({"recipe": "digits", "workdir": "."}, "workdir: given without run"),
        ({"recipe": "command"}, "recipe: command is not a recipe"),
        ({"run": "   "}, "run: '   ' is not allowed; expected your own command"),
        ({"run": "python t.py", "setup": "a\x00b"}, "setup:"),
        ({"run": "python t.py", "inject_interruptions": "50%"}, "inject_interruptions: a share (P%)"),
        ({}, "recipe: missing; expected one of imagenet"),
    ],
)
def test_bad_command_fields_are_named_with_what_is_allowed(flags, says, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SpotrainError) as err:
        load_spec(None, flags, env={})
    assert says in err.value.message


def test_a_missing_workdir_is_refused_before_launch(tmp_path: Path) -> None:
    spec = load_spec(None, {"run": "python t.py", "workdir": str(tmp_path / "gone")}, env={})
    with pytest.raises(SpotrainError, match="workdir: .*gone is not a directory"):
        check_includes(spec)


def test_the_estimate_of_a_command_is_unknown() -> None:
    est = estimate(catalog.COMMAND, catalog.instance_type("g5.xlarge"), spot_usd_per_hour=0.3)
    assert (est.hours, est.spot_usd, est.on_demand_usd) == (None, None, None)
    assert est.basis.startswith("unknown")
