"""The command tree. Commands parse, call one library function and render its result; no logic here."""

from __future__ import annotations

import sys

import click

from spotrain import __version__
from spotrain.errors import SpotrainError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="spotrain")
def cli() -> None:
    """Train neural nets on AWS spot instances for a fraction of the on-demand price."""


def main(argv: list[str] | None = None) -> None:
    """Console entry point: a SpotrainError becomes a message and exit 2, never a traceback."""
    try:
        cli.main(args=argv, prog_name="spotrain", standalone_mode=False)
    except SpotrainError as err:
        click.secho(f"error: {err.message}", fg="red", err=True)
        if err.hint:
            click.echo(f"hint: {err.hint}", err=True)
        sys.exit(err.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)


if __name__ == "__main__":
    main()
