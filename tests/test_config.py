"""RunSpec from YAML, SPOTRAIN_* variables and flags (flags win), and a named message for every bad value."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spotrain import catalog
from spotrain.config import RunSpec, load_spec
from spotrain.errors import SpotrainError
from spotrain.remote.base import state_home
from spotrain.settings import Settings, load_settings


def spec(
    flags: dict[str, Any] | None = None, env: dict[str, str] | None = None, file: Path | None = None
) -> RunSpec:
    return load_spec(file, {"recipe": "digits", **(flags or {})}, env or {})


def error(
    flags: dict[str, Any] | None = None, env: dict[str, str] | None = None, file: Path | None = None
) -> SpotrainError:
    with pytest.raises(SpotrainError) as e:
        spec(flags, env, file)
    return e.value


# ---- defaults and sources ----


@pytest.mark.parametrize("recipe", list(catalog.RECIPES))
def test_instance_defaults_to_the_recipes(recipe: str) -> None:
    data = {"data": "s3://my-data/set"} if recipe in catalog.DATA_LAYOUT else {}
    s = load_spec(None, {"recipe": recipe, **data}, {})
    assert s.instance == catalog.RECIPES[recipe].instance
    assert (s.nodes, s.regions, s.zones, s.max_attempts, s.checkpoint_every) == (
        1,
        ["us-east-1"],
        [],
        10,
        "auto",
    )


def test_yaml_then_environment_then_flags(tmp_path: Path) -> None:
    f = tmp_path / "run.yaml"
    f.write_text(
        "recipe: cifar10\ninstance: p3.2xlarge\nbudget: 10\nnodes: 2\nenv: {A: 1, B: yes}\nseed: 4\n"
        "data: s3://my-data/cifar10\n"
    )
    env = {"SPOTRAIN_BUDGET": "20", "SPOTRAIN_NODES": "3", "SPOTRAIN_ENV": "B=env,C=3", "SPOTRAIN_HOME": "/x"}
    flags = {"nodes": 4, "seed": None, "zones": (), "env": ("C=flag",), "recipe": None}
    s = load_spec(f, flags, env)
    assert s.recipe == "cifar10" and s.instance == "p3.2xlarge"  # YAML only
    assert s.budget == 20.0  # the environment beats the file
    assert s.nodes == 4  # flags beat both
    assert s.seed == 4  # None means "flag not given"
    assert s.env == {"A": "1", "B": "env", "C": "flag"}  # env maps merge key by key


def test_environment_variables_are_parsed_per_field() -> None:
    env = {
        "SPOTRAIN_REGIONS": "us-east-1, us-west-2",
        "SPOTRAIN_ZONES": "us-west-2b",
        "SPOTRAIN_DRY_RUN": "1",
        "SPOTRAIN_INJECT_INTERRUPTIONS": "20s,50%",
        "SPOTRAIN_CHECKPOINT_EVERY": "5m",
        "SPOTRAIN_IMDS_URL": "off",  # not a field: ignored
    }
    s = spec(env=env)
    assert s.regions == ["us-east-1", "us-west-2"] and s.zones == ["us-west-2b"]
    assert s.dry_run is True and s.inject_interruptions == ["20s", "50%"] and s.checkpoint_every == 300.0


def test_yaml_keys_may_use_dashes_and_includes_are_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    f = tmp_path / "conf" / "run.yaml"
    f.write_text("recipe: digits\nmax-price: 1.5\nincludes: [data.py, /abs/x]\n")
    s = load_spec(f, {}, {})
    assert s.max_price == 1.5
    assert s.includes == [tmp_path / "conf" / "data.py", Path("/abs/x")]


def test_an_empty_yaml_file_is_an_empty_spec(tmp_path: Path) -> None:
    (tmp_path / "e.yaml").write_text("# nothing yet\n")
    assert spec(file=tmp_path / "e.yaml").recipe == "digits"


@pytest.mark.parametrize(
    ("value", "seconds"), [(60, 60.0), ("300", 300.0), ("300s", 300.0), ("5m", 300.0), (1800.0, 1800.0)]
)
def test_checkpoint_every_accepts_seconds_and_minutes(value: Any, seconds: float) -> None:
    assert spec({"checkpoint_every": value}).checkpoint_every == seconds


@pytest.mark.parametrize(("value", "seconds"), [("90", 90.0), ("30m", 1800.0), ("2h", 7200.0), (None, None)])
def test_max_wait_reads_seconds_minutes_and_hours(value: Any, seconds: float | None) -> None:
    assert spec({"max_wait": value}).max_wait == seconds


@pytest.mark.parametrize("value", ["0", "-5", "inf", "soon"])
def test_a_max_wait_that_is_no_duration_is_refused_naming_it(value: str) -> None:
    with pytest.raises(SpotrainError, match="max_wait"):
        spec({"max_wait": value})


def test_a_spec_reloads_from_its_json_form_and_is_frozen() -> None:
    s = spec(
        {"env": {"X": "1"}, "includes": [Path("/a")], "ssh_cidr": "203.0.113.7", "zones": ["us-east-1c"]}
    )
    assert s.ssh_cidr == "203.0.113.7/32"
    assert RunSpec(**s.model_dump(mode="json")) == s
    with pytest.raises(Exception):  # noqa: B017 (pydantic's frozen-instance error)
        s.nodes = 2  # type: ignore[misc]


# ---- bad values: each names the field, the value, what is allowed, and where it came from ----

BAD = [
    ("budget", -3, "budget: -3 is not allowed; expected a positive number of dollars"),
    ("budget", "abc", "budget: abc is not allowed"),
    ("budget", float("inf"), "budget: inf is not allowed; expected a positive number of dollars"),
    ("budget", "nan", "budget: nan is not allowed; expected a positive number of dollars"),
    ("budget", 0, "budget: 0 is not allowed"),
    ("max_price", "inf", "max_price: inf is not allowed; expected a positive spot price"),
    ("max_price", 0, "max_price: 0 is not allowed; expected a positive spot price"),
    ("nodes", 0, "nodes: 0 is not allowed; expected a whole number of instances, 1 or more"),
    ("nodes", 1.5, "nodes: 1.5 is not allowed"),
    ("max_attempts", 0, "max_attempts: 0 is not allowed"),
    (
        "recipe",
        "digitz",
        "recipe: digitz is not allowed; expected one of imagenet, cifar10, cifar10_resnet9, digits (did you mean digits?)",
    ),
    (
        "instance",
        "p3.16xl",
        "instance: p3.16xl is not allowed; expected an instance type in spotrain's catalog",
    ),
    ("regions", ["us-east-1", "mars-1"], "regions: mars-1 is not allowed; expected AWS region names"),
    ("regions", [], "regions: [] is not allowed"),
    ("zones", ["us-west-2a"], "zones: us-west-2a is not allowed; expected a zone of us-east-1"),
    (
        "checkpoint_every",
        "10s",
        "checkpoint_every: 10s is not allowed; expected 'auto' or a number of seconds from 60 to 1800",
    ),
    ("checkpoint_every", 3600, "checkpoint_every: 3600 is not allowed"),
    ("checkpoint_every", True, "checkpoint_every: True is not allowed"),
    ("data", "http://example.com/x", "data: http://example.com/x is not allowed; expected an S3 URI"),
    ("data", "s3://Bad_Bucket/x", "data: s3://Bad_Bucket/x is not allowed"),
    ("data", "snap-12", "data: snap-12 is not allowed"),
    ("bucket", "My_Bucket", "bucket: My_Bucket is not allowed; expected an S3 bucket name"),
    ("bucket", "192.168.1.1", "bucket: 192.168.1.1 is not allowed"),
    ("bucket", "ab", "bucket: ab is not allowed"),
    ("env", {"1BAD": "x"}, "env: {'1BAD': 'x'} is not allowed; expected a map of environment variable names"),
    ("env", ("NOEQUALS",), "env: ['NOEQUALS'] is not allowed"),
    ("ami", "ami-xyz", "ami: ami-xyz is not allowed; expected an AMI id"),
    ("ssh_cidr", "10.0.0.1/24", "ssh_cidr: 10.0.0.1/24 is not allowed; expected an IPv4 network"),
    ("ssh_cidr", "everyone", "ssh_cidr: everyone is not allowed"),
    ("ssh_cidr", "2001:db8::7/128", "ssh_cidr: 2001:db8::7/128 is not allowed; expected an IPv4 network"),
    ("target_acc", 1.5, "target_acc: 1.5 is not allowed; expected an accuracy above 0 and at most 1"),
    ("target_acc", 0, "target_acc: 0 is not allowed"),
    ("max_epochs", 0, "max_epochs: 0 is not allowed"),
    ("seed", -1, "seed: -1 is not allowed"),
    ("dry_run", "maybe", "dry_run: maybe is not allowed; expected true or false"),
    (
        "inject_interruptions",
        ["50%", "20x"],
        "inject_interruptions: 20x is not allowed; expected step:30 (after training step 30)",
    ),
    ("inject_interruptions", ["100%"], "inject_interruptions: 100% is not allowed"),
    ("boot_delay_s", -1, "boot_delay_s: -1 is not allowed"),
    ("boot_delay_s", "inf", "boot_delay_s: inf is not allowed"),
]


@pytest.mark.parametrize(("field", "value", "message"), BAD, ids=[f"{f}={v}" for f, v, _ in BAD])
def test_each_bad_value_is_named_with_what_is_allowed(field: str, value: Any, message: str) -> None:
    e = error({field: value})
    assert message in e.message
    assert e.hint == "fix it on the command line"


@pytest.mark.parametrize("recipe", sorted(catalog.DATA_LAYOUT))
def test_a_recipe_that_reads_data_is_refused_without_it(recipe: str) -> None:
    e = error({"recipe": recipe})
    assert e.message.startswith(f"data: missing; recipe {recipe} needs data: an S3 URI")
    assert catalog.DATA_LAYOUT[recipe] in e.message
    assert e.hint == "give data in the YAML file, as SPOTRAIN_DATA or as --data"
    assert spec({"recipe": recipe, "data": "snap-0123456789abcdef0"}).data == "snap-0123456789abcdef0"


def test_a_bad_environment_variable_is_named_in_the_hint() -> None:
    e = error(env={"SPOTRAIN_BUDGET": "-3"})
    assert e.message == "budget: -3 is not allowed; expected a positive number of dollars"
    assert e.hint == "fix or unset SPOTRAIN_BUDGET"


def test_a_bad_yaml_value_names_the_file(tmp_path: Path) -> None:
    f = tmp_path / "run.yaml"
    f.write_text("recipe: digits\nnodes: [1, 2]\n")
    e = error(file=f)
    assert e.message.startswith("nodes: [1, 2] is not allowed; expected a whole number")
    assert str(f) in e.hint


def test_every_bad_field_is_reported_at_once() -> None:
    e = error({"budget": -1, "nodes": 0})
    assert "budget: -1" in e.message and "nodes: 0" in e.message


def test_a_missing_recipe_says_how_to_give_one() -> None:
    with pytest.raises(SpotrainError) as e:
        load_spec(None, {}, {})
    assert e.value.message == "recipe: missing; expected one of imagenet, cifar10, cifar10_resnet9, digits"
    assert "SPOTRAIN_RECIPE" in e.value.hint


def test_an_unknown_yaml_key_is_named_with_the_known_ones(tmp_path: Path) -> None:
    f = tmp_path / "run.yaml"
    f.write_text("recipe: digits\nbudgett: 5\n")
    e = error(file=f)
    assert e.message == f"unknown key 'budgett' in the file {f}; did you mean 'budget'?"
    assert e.hint.startswith("known keys: recipe, instance, nodes")


def test_a_yaml_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "run.yaml"
    f.write_text("recipe: digits\nbudget: 5\nregions: [us-east-1\nnodes: 2\n")
    e = error(file=f)
    assert str(f) in e.message and "is not valid YAML at line" in e.message
    assert e.hint


@pytest.mark.parametrize("text", ["- a list\n- of things\n", "just text\n"])
def test_a_yaml_file_that_is_not_a_mapping_is_refused(tmp_path: Path, text: str) -> None:
    f = tmp_path / "run.yaml"
    f.write_text(text)
    assert "not a mapping" in error(file=f).message


def test_a_missing_yaml_file_is_named(tmp_path: Path) -> None:
    e = error(file=tmp_path / "nope.yaml")
    assert str(tmp_path / "nope.yaml") in e.message and "-f" in e.hint


FIELDS = list(RunSpec.model_fields)
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.lists(st.text(max_size=8), max_size=3),
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(FIELDS), VALUES, max_size=4))
def test_no_pydantic_error_ever_escapes(flags: dict[str, Any]) -> None:
    try:
        load_spec(None, {"recipe": "digits", **flags}, {})
    except SpotrainError as e:
        assert e.message and e.hint


# ---- Settings ----


def test_settings_come_from_the_environment(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPOTRAIN_PROFILE", "work")
    s = load_settings()
    assert s.state_dir == isolated_env and s.profile == "work"
    assert s.dry_run_dir() == isolated_env / "dry-run"
    assert s.state_dir_for(True) == s.dry_run_dir() and s.state_dir_for(False) == isolated_env
    assert state_home() == isolated_env  # remote/ asks config, not the environment itself


def test_settings_default_to_the_home_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPOTRAIN_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load_settings().state_dir == tmp_path / ".spotrain"
    assert load_settings(state_dir="rel", profile=None).state_dir == Path(os.getcwd()) / "rel"
    assert isinstance(load_settings(), Settings)


# ---- spec files a user did not mean, or that would exhaust this machine ----


def test_a_spec_file_of_binary_bytes_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "run.yaml"
    f.write_bytes(b"recipe: digits\n\xff\xfe\x00\x01\x89PNG")
    e = error(file=f)
    assert str(f) in e.message and "not UTF-8 text" in e.message and "byte 15" in e.message
    assert "YAML" in e.hint


def test_a_spec_file_over_1_mb_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    f = tmp_path / "run.yaml"
    f.write_text("recipe: digits\n" + "#" * (1 << 20) + "\n")
    e = error(file=f)
    assert str(f) in e.message and "1 MB" in e.message and "1048592 bytes" in e.message
    assert "env" in e.hint or "includes" in e.hint


def test_a_yaml_alias_bomb_is_refused_without_expanding_it(tmp_path: Path) -> None:
    levels = ["  - &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"  - &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 7)]  # 10^7 leaves
    f = tmp_path / "run.yaml"
    f.write_text("recipe: digits\nincludes:\n" + "\n".join(levels) + "\n")
    e = error(file=f)
    assert str(f) in e.message and "line 4" in e.message and "aliases" in e.message
    assert "write the value out" in e.hint


def test_yaml_nested_past_any_spec_s_need_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "run.yaml"
    f.write_text("recipe: digits\nenv: " + "[" * 5000 + "]" * 5000 + "\n")
    e = error(file=f)
    assert str(f) in e.message and "nested" in e.message


BAD_ENV = [
    ({f"V{i}": "1" for i in range(300)}, "at most 256 variables (this one has 300)"),
    ({"BIG": "x" * 70_000}, "at most 64 KiB of names and values (this one has 68.4 KiB)"),
    ({"A": "x\x00y"}, "no NUL character (A has one)"),
    ({"A-B": "1"}, "names such as LR or WANDB_PROJECT"),
]


@pytest.mark.parametrize(("env", "message"), BAD_ENV, ids=["count", "bytes", "nul", "name"])
def test_env_is_bounded(env: dict[str, str], message: str) -> None:
    e = error({"env": env})
    assert e.message.startswith("env: ") and message in e.message, e.message
    assert len(e.message) < 400  # the value is shown cut short, not 70 kB of it
    assert e.hint == "fix it on the command line"
