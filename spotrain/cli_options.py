"""What every command of the tree shares, declared once: the AWS options (`@aws_options`: --profile
and --region), `@json_option`, the RUN argument (a run id or prefix, completed from the stores), the
catalog's completion for --recipe and --instance, and the console (no ANSI at all under NO_COLOR).

Completion is click's (`_SPOTRAIN_COMPLETE=bash_source spotrain`); it reads only the catalog and the
state directory's stores, never a cloud, so a TAB answers at once."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import click
from click.shell_completion import CompletionItem

REGION_HELP = "AWS region (default: the profile's, else us-east-1)."
PROFILE_HELP = "AWS profile in ~/.aws/config (default: $SPOTRAIN_PROFILE, else boto3's credential chain)."
RUN_REGION_HELP = "AWS region the run was launched in (checked; default: the run's regions)."
RUNS_REGION_HELP = "Only the runs launched in this AWS region (a RUN launched elsewhere is refused)."


def no_color() -> bool:
    """https://no-color.org: NO_COLOR set and not empty turns colour off, whatever its value."""
    return os.environ.get("NO_COLOR", "") != ""


def console(*, stderr: bool = False, width: int | None = None):
    """The one rich console of the CLI, as wide as the terminal (rich asks it; COLUMNS, else 80, when
    the stream is not one: terminal.console's rule), colour only on a terminal. Under NO_COLOR it writes no ANSI at all (rich's own NO_COLOR
    support drops colours but keeps bold and italics; color_system=None renders no style)."""
    from rich.console import Console

    if no_color():
        return Console(width=width, stderr=stderr, color_system=None)
    return Console(width=width, stderr=stderr)


def aws_options(*, many_regions: bool = False, region_help: str = REGION_HELP) -> Callable:
    """--profile and --region for a command that talks to AWS. The choice goes to `settings.chosen`
    for the command's duration, so every library path that opens a cloud uses it (`load_settings`).
    `many_regions`: launch's repeatable --region, the run's allowed regions, passed on as `regions`."""

    def decorate(command: Callable) -> Callable:
        @functools.wraps(command)
        def with_aws(*args: Any, profile: str | None, region: Any, **kwargs: Any) -> Any:
            from spotrain import settings  # pydantic: imported when a command runs, not at start

            if many_regions:
                kwargs["regions"] = region
                region = None
            with settings.chosen(profile=profile, region=region):
                return command(*args, **kwargs)

        region = click.option(
            "--region",
            "region",
            multiple=many_regions,
            metavar="REGION",
            help="Allowed region, cheapest zone first (repeatable)." if many_regions else region_help,
        )
        profile = click.option("--profile", metavar="NAME", help=PROFILE_HELP)
        return profile(region(with_aws))

    return decorate


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts, not a table.")


def _catalog_items(names, incomplete: str) -> list[CompletionItem]:
    return [CompletionItem(name) for name in names if name.startswith(incomplete)]


def complete_recipe(ctx, param, incomplete: str) -> list[CompletionItem]:
    from spotrain.catalog import RECIPES

    return _catalog_items(RECIPES, incomplete)


def complete_instance(ctx, param, incomplete: str) -> list[CompletionItem]:
    from spotrain.catalog import INSTANCE_TYPES

    return _catalog_items(INSTANCE_TYPES, incomplete)


class RunId(click.ParamType):
    """A run named by its id, its name or a unique prefix of its id, in the real or the dry-run's
    store: the command gets the full id. Looked up when the command runs (an unknown one exits 2 listing the known)."""

    name = "RUN"

    def convert(self, value, param, ctx) -> str:
        from spotrain.workspace import find_run

        return find_run(value)[0]

    def shell_complete(self, ctx, param, incomplete: str) -> list[CompletionItem]:
        """The ids and names of both stores that start with what was typed, newest first (the store
        only)."""
        from spotrain.workspace import known_runs

        return [
            CompletionItem(run_id, help="dry-run" if dry_run else None)
            for run_id, dry_run in known_runs()
            if run_id.startswith(incomplete)
        ]


RUN_ID = RunId()
