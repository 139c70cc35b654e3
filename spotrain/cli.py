"""The command tree: the group, `launch`, and the entry point. Commands parse, call one library
function and render its result; no logic here. The commands on runs already launched are in
cli_runs.py, the account's in cli_account.py, the options they share in cli_options.py: a command
that talks to AWS declares `@aws_options()`, one that shows a table `@json_option`, a RUN argument
`type=RUN_ID` (completed from the stores); tests/test_cli_flags.py checks each against what the
command does."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import click

from spotrain import __version__
from spotrain.cli_account import init, prices, smoke
from spotrain.cli_detached import attach, detach_refused, print_handed_off
from spotrain.cli_metrics import tensorboard
from spotrain.cli_options import (
    aws_options,
    complete_instance,
    complete_recipe,
    console,
    json_option,
    no_color,
)
from spotrain.cli_runs import RUN_COMMANDS
from spotrain.errors import SpotrainError
from spotrain.terminal import EXIT_CTRL_C, exit_for, live_view, outcome_line, print_report


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="spotrain")
def cli() -> None:
    """Train neural nets on AWS spot instances for a fraction of the on-demand price.

    A run survives its spot instances being taken away: it resumes from its last checkpoint on a new
    one, and `spotrain cost` says what it took in hours and dollars. `spotrain COMMAND --help` says more.

    \b
    Examples:
      spotrain launch --dry-run --recipe digits --inject-interruption step:30 --auto-resume -y   # no AWS
      spotrain init                                                   # once per account and region
      spotrain launch --instance p3.16xlarge --recipe imagenet --data snap-0abc --auto-resume
      spotrain status
      spotrain cost
    """


@cli.command()
@click.option(
    "-f", "--file", "spec_file", type=click.Path(path_type=Path), help="Run spec in YAML; flags win."
)
@click.option("--recipe", help="digits | cifar10 | imagenet.", shell_complete=complete_recipe)
@click.option(
    "--instance",
    help="EC2 instance type (default: the recipe's), e.g. p3.16xlarge.",
    shell_complete=complete_instance,
)
@aws_options(many_regions=True)
@click.option("--zone", "zones", multiple=True, help="Allowed zone (repeatable; default: any).")
@click.option("--max-price", type=float, help="Never pay more than this spot $/h.")
@click.option("--budget", type=float, help="Stop when spent + projected $ would pass this.")
@click.option("--max-attempts", type=int, help="Instances at most, interruptions included (default 10).")
@click.option("--auto-resume", is_flag=True, default=None, help="Relaunch after each interruption.")
@click.option(
    "--max-wait",
    help="With --auto-resume: wait at most this long for spot capacity, e.g. 2h (default: no limit).",
)
@click.option(
    "--terminate-on-notice",
    is_flag=True,
    default=None,
    help="End an interrupted instance at once (billed) rather than leave it to EC2 (free in its first hour).",
)
@click.option("--checkpoint-every", help="Seconds between checkpoints, or auto (Young's interval).")
@click.option("--data", help="The data set: s3://bucket/prefix or an EBS snapshot snap-...")
@click.option("--bucket", help="Checkpoint bucket (default: the one `spotrain init` made).")
@click.option("--target-acc", type=float, help="Stop at this eval accuracy (default: the recipe's).")
@click.option("--max-epochs", type=int, help="The schedule's length (default: the recipe's).")
@click.option("--seed", type=int)
@click.option("--ami", help="Boot this image instead of the Deep Learning AMI spotrain picks.")
@click.option("--ssh-cidr", help="Who may SSH in (default: this machine's public address /32).")
@click.option(
    "--dry-run", is_flag=True, default=None, help="The whole flow on this machine: moto, local instances."
)
@click.option(
    "--inject-interruption",
    "inject",
    multiple=True,
    help="Dry-run: interrupt the next attempt at AT: step:30, 50% (of the steps) or 20s; AT@R: on node R only (repeatable).",
)
@click.option(
    "--inject-rebalance",
    "rebalance",
    multiple=True,
    help="Detached dry-run: a rebalance recommendation to the next attempt at step:N or P% (repeatable).",
)
@click.option("--boot-delay", type=float, help="Dry-run: simulated boot seconds (default 2).")
# Metrics out (optional extras on the instance: spotrain[tensorboard], spotrain[wandb]).
@click.option(
    "--tensorboard",
    is_flag=True,
    default=None,
    help="TensorBoard event files, mirrored: `spotrain tensorboard RUN`.",
)
@click.option(
    "--wandb", metavar="PROJECT", help="Log to W&B PROJECT; the run id is W&B's id, resumed each attempt."
)
@click.option("-n", "--name", help="A name to know the run by (status NAME, logs NAME, down NAME).")
@click.option("--detach", is_flag=True, help="Hand the run to an AWS Auto Scaling group and return.")
@click.option("-y", "--yes", is_flag=True, help="Launch without asking.")
@json_option
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def launch(spec_file: Path | None, name: str | None, yes: bool, detach: bool, as_json: bool, **flags) -> None:
    """Plan, request a spot instance, train, and watch until the run ends.

    \b
    Examples:
      spotrain launch --instance p3.16xlarge --recipe imagenet --data snap-0abc --auto-resume
      spotrain launch --dry-run --recipe digits --inject-interruption step:30 --auto-resume -y
      spotrain launch --dry-run --recipe digits -y --json   # the live view on stderr, the end as JSON
      spotrain launch --auto-resume -- python train.py --lr 0.1   # your own script (README)

    Ctrl-C leaves the run going on its instance; `spotrain resume RUN` watches it again.
    Exit status: 0 the run succeeded, 75 interrupted (resume it), 1 failed, 2 bad input, 3 cancelled
    by `spotrain down`, 130 Ctrl-C (the run goes on).
    """
    from spotrain import controller
    from spotrain.config import load_spec
    from spotrain.cost import run_bill
    from spotrain.nodes import nodes_refused
    from spotrain.render import cost_table, outcome_json, plan_table
    from spotrain.report.summary import bill_json
    from spotrain.store import TERMINAL
    from spotrain.workspace import open_controller

    flags = {k: v for k, v in flags.items() if v not in (None, ())}
    rename = {
        "inject": "inject_interruptions",
        "rebalance": "inject_rebalances",
        "boot_delay": "boot_delay_s",
    }
    flags = {rename.get(k, k): list(v) if isinstance(v, tuple) else v for k, v in flags.items()}
    if "command" in flags:  # `launch [OPTIONS] -- CMD ...`: one word is a shell line, words are quoted
        words = flags.pop("command")
        flags["run"] = words[0] if len(words) == 1 else shlex.join(words)
    spec = load_spec(spec_file, flags)
    if name is not None:  # a bad or taken name is refused before the plan asks the cloud anything
        controller.check_name(name)
    detach = detach or spec.detach  # `detach: true` in the spec, or the flag
    detach_refused(detach, spec)
    out = console(stderr=as_json)  # --json: stdout is the one JSON object at the end
    with open_controller(dry_run=spec.dry_run, boot_delay_s=spec.boot_delay_s, seed=spec.seed) as ctl:
        if not detach:
            ctl.refuse_attached_beside_stand_in()
        spec, plan = controller.prepare(ctl, spec)
        out.print(plan_table(spec, plan))
        nodes_refused(spec, detach=detach)  # spotrain/nodes.py: what of --nodes N is not built
        if not yes and not click.confirm("launch?", default=True, err=as_json):
            raise click.exceptions.Abort()
        run_id = controller.create_run(ctl, spec, plan, name)
        out.print(f"run {run_id}" + (f" ({name})" if name else ""))
        if detach:  # nothing of spotrain runs here from now on (cli_detached.py)
            return print_handed_off(out, controller.launch_detached(ctl, run_id), run_id)
        with live_view(out, ctl.store, run_id) as show:
            outcome = controller.launch(ctl, run_id, on_event=show)
        out.print(outcome_line(run_id, outcome), markup=False, highlight=False, soft_wrap=True)
        bill = run_bill(ctl.store, run_id)
        out.print(cost_table(bill))
        if outcome.state in TERMINAL:
            print_report(out, ctl, run_id)
    if as_json:
        click.echo(json.dumps(outcome_json(outcome, bill_json(bill)), indent=1))
    exit_for(outcome)


for command in (*RUN_COMMANDS, prices, init, smoke, tensorboard, attach):  # runs; the account; metrics out
    cli.add_command(command)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: a SpotrainError becomes a message and exit 2, never a traceback."""
    color = False if no_color() else None  # None: click's own choice (colour on a terminal)
    try:
        cli.main(args=argv, prog_name="spotrain", standalone_mode=False, color=color)
    except SpotrainError as err:
        click.secho(f"error: {err.message}", fg="red", err=True, color=color)
        if err.hint:
            click.echo(f"hint: {err.hint}", err=True)
        sys.exit(err.exit_code)
    except click.exceptions.Abort as err:
        if isinstance(err.__cause__, KeyboardInterrupt):  # click turns Ctrl-C into Abort
            click.echo("interrupted (Ctrl-C)", err=True)
            sys.exit(EXIT_CTRL_C)
        click.echo("aborted", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("interrupted (Ctrl-C)", err=True)
        sys.exit(EXIT_CTRL_C)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)


if __name__ == "__main__":
    main()
