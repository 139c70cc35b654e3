"""Which profile and region a command uses: --profile over SPOTRAIN_PROFILE over the chain, for the
command's duration only; a bad --region is refused by name."""

from __future__ import annotations

import pytest

from spotrain.errors import SpotrainError
from spotrain.settings import chosen, load_settings


def test_the_command_line_wins_over_the_environment_while_it_runs(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("SPOTRAIN_HOME", str(tmp_path))
    monkeypatch.setenv("SPOTRAIN_PROFILE", "from-env")
    assert (load_settings().profile, load_settings().region) == ("from-env", None)
    with chosen(profile="work", region="eu-west-1"):
        assert (load_settings().profile, load_settings().region) == ("work", "eu-west-1")
        with chosen(profile=None, region="us-west-2"):  # None: not given, the outer choice stays
            assert (load_settings().profile, load_settings().region) == ("work", "us-west-2")
        assert load_settings(profile="override").profile == "override"  # a caller's own override
    assert (load_settings().profile, load_settings().region) == ("from-env", None)  # over when it ends


def test_allows_only_runs_of_the_chosen_region(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("SPOTRAIN_HOME", str(tmp_path))
    assert load_settings().allows(["us-east-1"])  # no --region: every run
    with chosen(region="us-west-2"):
        assert load_settings().allows(["us-east-1", "us-west-2"]) and not load_settings().allows(
            ["us-east-1"]
        )
        with chosen(region="Mars"), pytest.raises(SpotrainError) as err:
            load_settings()
    assert "Mars" in err.value.message and "--region" in (err.value.hint or "")
