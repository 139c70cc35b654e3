"""The commands of a detached run (`launch --detach`), registered by cli.py: `attach RUN` shows the run as
AWS holds it now (its group, its ledger's attempts, its cost by cost.py's rules) and with `--follow`
keeps showing it until the run ends; Ctrl-C stops the watching and changes nothing (exit 130). Also what
`launch --detach` prints once the run is handed off."""

from __future__ import annotations

import sys
import time

import click

from spotrain.cli_options import RUN_ID, aws_options, console, json_option
from spotrain.terminal import EXIT_CTRL_C, EXIT_FAILED

FOLLOW_EVERY_S = 10.0  # one ledger and group read each; nothing of spotrain runs in between


def detach_refused(detach: bool, spec) -> None:
    """`--detach` with what it cannot do, refused before anything is planned or launched; a dry-run's
    detached run first gets its AWS stand-in (spotrain/cloud/local/stand_in.py), which this launch and
    every later dry-run call talk to while the run lives."""
    from spotrain.errors import SpotrainError

    if detach and spec.inject_interruptions and not spec.dry_run:
        raise SpotrainError(
            "--inject-interruption with --detach: a detached run on AWS is interrupted by AWS only",
            "drop --inject-interruption (`spotrain smoke` sends one real interruption)",
        )
    if detach and spec.run is not None:
        raise SpotrainError(
            "--detach with your own command: the detached bundle carries trainer/ only, not your workdir",
            "run it attached (drop --detach), or --detach with a --recipe",
        )
    if detach and spec.env:
        raise SpotrainError(
            "env: with --detach: the detached run's supervisor does not pass a spec's environment to the "
            "trainer yet (and its settings in S3 are no place for secrets)",
            "run it attached (drop --detach / detach: true), or drop env:",
        )
    if spec.inject_rebalances and not (detach and spec.dry_run):
        raise SpotrainError(
            "--inject-rebalance works in a detached dry-run only (its AWS stand-in delivers it)",
            "add --dry-run --detach",
        )
    if any(not at.startswith("step:") and not at.endswith("%") for at in spec.inject_rebalances):
        raise SpotrainError(
            "--inject-rebalance takes a training step or a share of the steps", "e.g. step:20 or 40%"
        )
    if detach and spec.dry_run:
        from spotrain.cloud.local.stand_in import ensure_running
        from spotrain.settings import load_settings

        ensure_running(load_settings().dry_run_dir())


def print_handed_off(console, state, run_id: str) -> None:
    zones = len(state.subnets)
    console.print(
        f"run {run_id} handed to Auto Scaling group {state.name} in {state.region} "
        f"(one spot instance over {zones} zone{'s' * (zones != 1)}, Capacity Rebalancing on).\n"
        f"Nothing of spotrain runs on this machine now. Watch it: `spotrain attach {run_id} --follow`; "
        f"stop it: `spotrain down {run_id}`.",
        markup=False,
        highlight=False,
    )


@click.command()
@click.argument("run_id", metavar="RUN", type=RUN_ID)
@click.option("-f", "--follow", is_flag=True, help="Keep showing it until the run ends.")
@json_option
@aws_options()
def attach(run_id: str, follow: bool, as_json: bool) -> None:
    """Show a detached run as AWS holds it now: its group, its attempts, its cost.

    \b
    Examples:
      spotrain launch --instance g4dn.xlarge --recipe cifar10 --detach -y
      spotrain attach cifar10-20261204-0403-ed2d --follow

    Ctrl-C stops watching; the run goes on, nothing is changed.
    """
    import json

    from spotrain import detached
    from spotrain.detached import view_json
    from spotrain.errors import SpotrainError
    from spotrain.render import attempts_table
    from spotrain.workspace import controller_for_run, find_run

    out = console(stderr=as_json)
    full, _ = find_run(run_id)
    try:
        with controller_for_run(full) as ctl:
            while True:
                v = detached.view(ctl.cloud, ctl.store, full)
                if v is None:
                    raise SpotrainError(
                        f"run {full} is not detached", f"`spotrain status {full}` and `spotrain logs {full}`"
                    )
                detached.settle(ctl.store, v)  # its ledger's end, kept in the store for every `status`
                if as_json:  # one object per look: the view as the ledger and EC2 hold it now
                    click.echo(json.dumps(view_json(v), default=str))
                else:
                    out.print(attempts_table(v))
                if not follow or v.state != "RUNNING":
                    break
                time.sleep(FOLLOW_EVERY_S)
    except KeyboardInterrupt:
        out.print(f"stopped watching; run {full} goes on (`spotrain down {full}` stops it)")
        sys.exit(EXIT_CTRL_C)
    if v.state == "FAILED":
        sys.exit(EXIT_FAILED)
