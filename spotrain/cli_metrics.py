"""The commands about a run's metrics outside spotrain, registered by cli.py: `tensorboard RUN` fetches
the event files the trainer's mirror put in S3 (`--tensorboard`: every attempt's, one log dir) into a
local directory and prints, or with --serve runs, the `tensorboard --logdir` that shows them."""

from __future__ import annotations

import importlib.util
import os
import shlex
import sys
from pathlib import Path

import click

from spotrain.cli_options import RUN_ID, aws_options
from spotrain.errors import SpotrainError


@click.command("tensorboard")
@click.argument("run_id", metavar="RUN", type=RUN_ID)
@click.option(
    "--out", type=click.Path(path_type=Path), help="Log dir to fetch into (default: STATE/tensorboard/RUN)."
)
@click.option(
    "--serve", is_flag=True, help="Run `tensorboard --logdir` on it (needs the tensorboard package)."
)
@aws_options()
def tensorboard(run_id: str, out: Path | None, serve: bool) -> None:
    """The run's TensorBoard event files (launched with --tensorboard), every attempt's in one log dir.

    \b
    Examples:
      spotrain tensorboard digits-20261129-2145-a1b2
      spotrain tensorboard digits-20261129-2145-a1b2 --serve
    """
    from spotrain.cloud.aws.storage import fetch_tensorboard
    from spotrain.workspace import controller_for_run, find_run

    run_id = find_run(run_id)[0]
    with controller_for_run(run_id) as ctl:
        dest = out or ctl.state_dir / "tensorboard" / run_id
        bucket = ctl.cloud.bucket()
        files = fetch_tensorboard(ctl.cloud.session(), bucket=bucket, run_id=run_id, dest=dest)
    if not files:
        raise SpotrainError(
            f"run {run_id} has no TensorBoard event files in s3://{bucket}/runs/{run_id}/tensorboard/",
            "launch the run with --tensorboard (the trainer writes them from its first step event)",
        )
    click.echo(f"fetched {len(files)} event file(s) into {dest}")
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", str(dest)]
    if not serve:
        click.echo(f"tensorboard --logdir {shlex.quote(str(dest))}")
        return
    if importlib.util.find_spec("tensorboard") is None:  # found, not imported: the controller never does
        raise SpotrainError(
            "--serve needs the tensorboard package, which is not installed",
            "pip install 'spotrain[tensorboard]', or run the printed command where TensorBoard is",
        )
    os.execv(command[0], command)
