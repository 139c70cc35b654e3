"""Every command's --help names the habits' flags where they apply, and the "applies" sets come from
the command tree itself, not from a list kept by hand:

- talks to AWS: each command is run on a live run (its RUN, `-y`, a completion of each option that
  completes) with the doors to a cloud shut (`Controller.cloud`, and botocore's every API call): the
  commands that knock need --profile and --region; those that finish without knocking must not
  have them (a --profile that does nothing would mislead);
- shows a table: the command's code calls a table renderer (`*_table`, `render_prices`): --json."""

from __future__ import annotations

import ast
import inspect
import re
import textwrap
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from spotrain.cli import cli
from spotrain.cli_options import RunId
from spotrain.store import RunState, Store

COMMANDS = sorted(cli.commands)


class KnockedOnAws(Exception):
    """The command asked for a cloud (AWS, or the dry-run's moto)."""


def _knock(*_args, **_kwargs):
    raise KnockedOnAws


@pytest.fixture(scope="module")
def live_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A real (not dry-run) run in TRAINING with a live attempt, in a fresh state directory."""
    home = tmp_path_factory.mktemp("home")
    with Store.open(home) as store:
        run_id = store.new_run_id("digits")
        store.create_run(run_id, {"recipe": "digits", "instance": "g4dn.xlarge"}, dry_run=False)
        store.add_attempt(
            run_id,
            instance_id="i-0abc",
            region="us-east-1",
            zone="us-east-1a",
            instance_type="g4dn.xlarge",
            spot_usd_per_hour=0.2,
            requested_at=1_800_000_000.0,
        )
        store.set_state(run_id, RunState.TRAINING, reason="test")
    return home, run_id


LIKE_THE_RUN = ("digits", "g4dn.xlarge")  # the completion chosen where the run has one


def _args(command: click.Command, run_id: str) -> list[str]:
    """The command's arguments, from its parameters: the run for RUN, a completion of each option
    that completes (the run's own where it is one), -y where it asks."""
    args: list[str] = []
    for param in command.params:
        if isinstance(param, click.Argument) and isinstance(param.type, RunId):
            args.append(run_id)
        elif isinstance(param, click.Option) and param._custom_shell_complete is not None:
            values = [item.value for item in param.shell_complete(click.Context(command), "")]
            args += [param.opts[-1], next((v for v in values if v in LIKE_THE_RUN), values[0])]
        elif isinstance(param, click.Option) and "--yes" in param.opts:
            args.append("--yes")
    return args


def _talks_to_aws(name: str, home: Path, run_id: str, monkeypatch: pytest.MonkeyPatch) -> bool:
    from botocore.client import BaseClient

    from spotrain.workspace import Controller

    monkeypatch.setenv("SPOTRAIN_HOME", str(home))
    monkeypatch.setattr(Controller, "cloud", property(_knock))
    monkeypatch.setattr(BaseClient, "_make_api_call", _knock)
    command = cli.commands[name]
    out = CliRunner().invoke(cli, [name, *_args(command, run_id)])
    if isinstance(out.exception, KnockedOnAws):
        return True
    # Finishing without a cloud counts only when the command really finished (no early refusal).
    assert out.exit_code == 0, f"spotrain {name} neither finished nor asked for a cloud:\n{out.output}"
    return False


def _shows_a_table(command: click.Command) -> bool:
    code = ast.parse(textwrap.dedent(inspect.getsource(inspect.unwrap(command.callback))))
    called = {
        n.func.id if isinstance(n.func, ast.Name) else getattr(n.func, "attr", "")
        for n in ast.walk(code)
        if isinstance(n, ast.Call)
    }
    return any(name.endswith("_table") or name == "render_prices" for name in called)


def _help(name: str) -> str:
    out = CliRunner().invoke(cli, [name, "--help"])
    assert out.exit_code == 0, out.output
    return out.output


def _offers(page: str, flag: str) -> bool:
    """The help page lists `flag` among its options (not only in an example)."""
    return re.search(rf"^\s+(-\w, )?{flag}\b", page.split("Options:", 1)[-1], re.MULTILINE) is not None


@pytest.mark.parametrize("name", COMMANDS)
def test_aws_flags_exactly_where_the_command_talks_to_aws(name, live_run, monkeypatch) -> None:
    talks = _talks_to_aws(name, *live_run, monkeypatch)
    page = _help(name)
    for flag in ("--profile", "--region"):
        assert _offers(page, flag) == talks, f"spotrain {name} talks to AWS: {talks}, yet its help:\n{page}"


@pytest.mark.parametrize("name", COMMANDS)
def test_json_on_every_command_that_shows_a_table(name: str) -> None:
    assert _offers(_help(name), "--json") == _shows_a_table(cli.commands[name]), _help(name)


def test_the_derived_sets_are_not_empty(live_run, monkeypatch) -> None:
    """The derivations find what the issue names: so the tests above cannot pass by finding nothing."""
    with monkeypatch.context() as m:
        talking = {name for name in COMMANDS if _talks_to_aws(name, *live_run, m)}
    tables = {name for name in COMMANDS if _shows_a_table(cli.commands[name])}
    assert {"launch", "resume", "status", "logs", "down", "prices", "init", "smoke"} <= talking
    assert {"status", "cost", "compare", "prices"} <= tables
