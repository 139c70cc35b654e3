"""The command tree. Commands parse, call one library function and render its result; no logic here."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from spotrain import __version__
from spotrain.cli_account import init, prices, smoke
from spotrain.cli_detached import attach, detach_refused, print_handed_off
from spotrain.errors import SpotrainError
from spotrain.terminal import (
    EXIT_CTRL_C,
    exit_for,
    outcome_line,
    print_event,
    print_report,
    watching,
)


class RunId(click.ParamType):
    """A run named by its id or a unique prefix of it, in the real or the dry-run's store: the command
    gets the full id. Looked up when the command runs (an unknown one exits 2 listing the known)."""

    name = "RUN"

    def convert(self, value, param, ctx) -> str:
        from spotrain.workspace import find_run

        return find_run(value)[0]


RUN_ID = RunId()


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


# ---------------------------------------------------------------------------------------------- runs
def _console():
    from rich.console import Console

    return Console(width=120)


@cli.command()
@click.option(
    "-f", "--file", "spec_file", type=click.Path(path_type=Path), help="Run spec in YAML; flags win."
)
@click.option("--recipe", help="digits | cifar10 | imagenet.")
@click.option("--instance", help="EC2 instance type (default: the recipe's), e.g. p3.16xlarge.")
@click.option("--region", "regions", multiple=True, help="Allowed region, cheapest zone first (repeatable).")
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
    help="Dry-run: interrupt the next attempt at AT: step:30, 50% (of the steps) or 20s (repeatable).",
)
@click.option("--boot-delay", type=float, help="Dry-run: simulated boot seconds (default 2).")
@click.option("--detach", is_flag=True, help="Hand the run to an AWS Auto Scaling group and return.")
@click.option("-y", "--yes", is_flag=True, help="Launch without asking.")
def launch(spec_file: Path | None, yes: bool, detach: bool, **flags) -> None:
    """Plan, request a spot instance, train, and watch until the run ends.

    \b
    Examples:
      spotrain launch --instance p3.16xlarge --recipe imagenet --data snap-0abc --auto-resume
      spotrain launch --dry-run --recipe digits --inject-interruption step:30 --auto-resume -y

    Ctrl-C leaves the run going on its instance; `spotrain resume RUN` watches it again.
    Exit status: 0 the run succeeded, 75 interrupted (resume it), 1 failed, 2 bad input, 3 cancelled
    by `spotrain down`, 130 Ctrl-C (the run goes on).
    """
    from spotrain import controller
    from spotrain.config import load_spec
    from spotrain.render import cost_table, plan_table
    from spotrain.store import TERMINAL
    from spotrain.workspace import open_controller

    flags = {k: v for k, v in flags.items() if v not in (None, ())}
    rename = {"inject": "inject_interruptions", "boot_delay": "boot_delay_s"}
    flags = {rename.get(k, k): list(v) if isinstance(v, tuple) else v for k, v in flags.items()}
    spec = load_spec(spec_file, flags)
    detach_refused(detach, spec)
    console = _console()
    with open_controller(dry_run=spec.dry_run, boot_delay_s=spec.boot_delay_s, seed=spec.seed) as ctl:
        spec, plan = controller.prepare(ctl, spec)
        console.print(plan_table(spec, plan))
        if not yes and not click.confirm("launch?", default=True):
            raise click.exceptions.Abort()
        run_id = controller.create_run(ctl, spec, plan)
        console.print(f"run {run_id}")
        if detach:  # nothing of spotrain runs here from now on (cli_detached.py)
            return print_handed_off(console, controller.launch_detached(ctl, run_id), run_id)
        with watching(console, run_id):
            outcome = controller.launch(ctl, run_id, on_event=print_event(console))
        console.print(outcome_line(run_id, outcome), markup=False, highlight=False)
        from spotrain.cost import run_bill

        console.print(cost_table(run_bill(ctl.store, run_id)))
        if outcome.state in TERMINAL:
            print_report(console, ctl, run_id)
    exit_for(outcome)


@cli.command()
@click.argument("run_id", metavar="RUN", type=RUN_ID)
@click.option("--out", type=click.Path(path_type=Path), help="Directory for it (default: STATE/reports/RUN).")
@click.option("--open", "open_it", is_flag=True, help="Open the HTML page in a browser.")
def report(run_id: str, out: Path | None, open_it: bool) -> None:
    """One HTML page and its PNGs: accuracy against hours and $, schedule, attempts, prices, summary.

    \b
    Examples:
      spotrain report digits-20261129-2145-a1b2
      spotrain report digits-20261129-2145-a1b2 --out /tmp/report --open
    """
    from spotrain.report import build_report
    from spotrain.workspace import controller_for_run

    with controller_for_run(run_id) as ctl:
        done = build_report(ctl.store, run_id, out or ctl.state_dir / "reports" / run_id)
    for what in done.missing:
        click.echo(f"missing: {what}", err=True)
    click.echo(f"report: {done.html}")
    if open_it:
        import webbrowser

        webbrowser.open(done.html.resolve().as_uri())


@cli.command()
@click.argument("run_ids", metavar="RUN...", nargs=-1, required=True, type=RUN_ID)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def compare(run_ids: tuple[str, ...], as_json: bool) -> None:
    """The report's summary of several runs side by side (time and $ to target, savings, lost work).

    \b
    Example:
      spotrain compare digits-20261129-2145-a1b2 digits-20261129-2210-c3d4
    """
    import json

    from spotrain.report import compare_table, run_summary
    from spotrain.workspace import controller_for_run

    summaries = []
    for run_id in run_ids:
        with controller_for_run(run_id) as ctl:
            summaries.append(run_summary(ctl.store, run_id))
    if as_json:
        click.echo(json.dumps(summaries, indent=1))
    else:
        _console().print(compare_table(summaries))


@cli.command()
@click.argument("run_id", metavar="RUN", type=RUN_ID)
def resume(run_id: str) -> None:
    """Continue a run: after an interruption from its last checkpoint, or watch one still going.

    \b
    Example:
      spotrain resume digits-20261129-2145-a1b2
    """
    from spotrain.cost import run_bill
    from spotrain.render import cost_table
    from spotrain.workspace import controller_for_run

    console = _console()
    with controller_for_run(run_id) as ctl:
        from spotrain.detached import refuse_attached

        refuse_attached(ctl.store, run_id)
        with watching(console, run_id):
            outcome = ctl.orchestrator(print_event(console)).resume(run_id)
        console.print(outcome_line(run_id, outcome), markup=False, highlight=False)
        console.print(cost_table(run_bill(ctl.store, run_id)))
    exit_for(outcome)


@cli.command()
@click.argument("run_id", metavar="[RUN]", required=False, type=RUN_ID)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def status(run_id: str | None, as_json: bool) -> None:
    """Runs, their state, attempts, epoch, best accuracy and $ so far.

    \b
    Examples:
      spotrain status
      spotrain status digits-20261129-2145-a1b2 --json
    """
    import json

    from spotrain.controller import status_rows

    rows = status_rows(run_id)
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    from spotrain.render import status_table

    console = _console()
    console.print(status_table(rows))
    for row in rows:
        if row.get("trainer"):
            console.print(f"{row['run']}: {row['trainer']}", markup=False, highlight=False, soft_wrap=True)


@cli.command()
@click.argument("run_id", metavar="[RUN]", required=False, type=RUN_ID)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def cost(run_id: str | None, as_json: bool) -> None:
    """Wall-clock, GPU-hours, spot $, EBS $, S3 $, the on-demand equivalent, and time and $ to target.

    \b
    Examples:
      spotrain cost                      # the newest run
      spotrain cost digits-20261129-2145-a1b2 --json
    """
    import json

    from spotrain import workspace
    from spotrain.cost import run_bill
    from spotrain.render import cost_table
    from spotrain.report.summary import bill_json

    if run_id is None:
        run_id = _newest_run()
    with workspace.controller_for_run(run_id) as ctl:
        bill = run_bill(ctl.store, run_id)
    if as_json:
        click.echo(json.dumps(bill_json(bill), indent=1))
    else:
        _console().print(cost_table(bill))


def _newest_run() -> str:
    from spotrain.workspace import newest_run

    return newest_run()


@cli.command()
@click.argument("run_id", metavar="RUN", type=RUN_ID)
@click.option("--attempt", type=int, help="Which attempt's log (default: the newest).")
@click.option(
    "-f",
    "--follow",
    is_flag=True,
    help="Keep printing as the trainer writes, on into later attempts, until the run ends.",
)
def logs(run_id: str, attempt: int | None, follow: bool) -> None:
    """The trainer's log of one attempt (every attempt's log is kept).

    \b
    Examples:
      spotrain logs digits-20261129-2145-a1b2
      spotrain logs digits-20261129-2145-a1b2 --attempt 1
    """
    from spotrain.controller import attempt_log
    from spotrain.workspace import controller_for_run

    with controller_for_run(run_id) as ctl:
        for line in attempt_log(ctl, run_id, attempt, follow=follow):
            click.echo(line)


@cli.command()
@click.argument("run_id", metavar="[RUN]", required=False, type=RUN_ID)
@click.option("--all", "all_runs", is_flag=True, help="Every run's leftovers.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask.")
def down(run_id: str | None, all_runs: bool, yes: bool) -> None:
    """Terminate and delete everything a run owns (instances, security group); the run ends CANCELLED.

    \b
    Examples:
      spotrain down digits-20261129-2145-a1b2
      spotrain down --all -y
    """
    from spotrain.workspace import down_all, down_run

    if not run_id and not all_runs:
        raise SpotrainError("name a RUN, or pass --all", "see `spotrain status` for the runs")
    what = "every run's instances and security groups" if all_runs else f"everything run {run_id} owns"
    if not yes and not click.confirm(f"terminate and delete {what}?", default=False):
        raise click.exceptions.Abort()
    if all_runs:
        swept = down_all()
        for world in swept:
            cancelled = f"cancelled {', '.join(world.cancelled)}; " if world.cancelled else ""
            click.echo(f"{world.world}: {cancelled}removed {len(world.removed)} resources")
        if not swept:
            click.echo("no runs in this state directory: nothing to remove (AWS was not called)")
        return
    done = down_run(run_id)
    click.echo(f"run {run_id}: {done.state.value}; removed {', '.join(done.removed) or 'nothing'}")


for command in (prices, init, smoke, attach):  # the account, the real path, detached runs
    cli.add_command(command)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: a SpotrainError becomes a message and exit 2, never a traceback."""
    try:
        cli.main(args=argv, prog_name="spotrain", standalone_mode=False)
    except SpotrainError as err:
        click.secho(f"error: {err.message}", fg="red", err=True)
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
