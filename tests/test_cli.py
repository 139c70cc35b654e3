from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from spotrain import __version__
from spotrain.cli import cli, main
from spotrain.errors import SpotrainError


def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_spotrain_error_is_message_and_exit_2(capsys, monkeypatch) -> None:
    @cli.command("boom")
    def boom() -> None:
        raise SpotrainError("instance type 'p9.huge' is unknown", "run `spotrain prices` to list types")

    try:
        try:
            main(["boom"])
        except SystemExit as exit_:
            assert exit_.code == 2
        err = capsys.readouterr().err
        assert "p9.huge" in err and "hint:" in err and "Traceback" not in err
    finally:
        cli.commands.pop("boom")


def test_console_script_runs() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "spotrain.cli", "--version"], capture_output=True, text=True, check=True
    )
    assert __version__ in out.stdout
