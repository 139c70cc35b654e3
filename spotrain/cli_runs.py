"""The commands about runs already launched, registered by cli.py: `resume`, `status`, `cost`, `logs`,
`report`, `compare` and `down`. Each parses, calls one library function and renders its result."""

from __future__ import annotations

from pathlib import Path

import click

from spotrain.cli_options import (
    RUN_ID,
    RUN_REGION_HELP,
    RUNS_REGION_HELP,
    aws_options,
    console,
    json_option,
)
from spotrain.errors import SpotrainError
from spotrain.terminal import exit_for, live_view, outcome_line


def detached_view(run_id: str):
    """The run as its ledger and AWS hold it now when it is detached, else None (its store tells)."""
    from spotrain.workspace import controller_for_run

    with controller_for_run(run_id) as ctl:
        if not ctl.store.events(ctl.run.run_id, kinds=["detached"]):
            return None
        from spotrain import detached  # the clouds: only for a detached run (`status` stays fast)

        handed = detached.view(ctl.cloud, ctl.store, ctl.run.run_id)
        if handed is not None:
            detached.settle(ctl.store, handed)  # its ledger's end, kept in the store for every `status`
        return handed


def _echo_json(value) -> None:
    import json

    click.echo(json.dumps(value, indent=1))


@click.command()
@click.argument("run_id", metavar="RUN", type=RUN_ID)
@aws_options(region_help=RUN_REGION_HELP)
@json_option
def resume(run_id: str, as_json: bool) -> None:
    """Continue a run: after an interruption from its last checkpoint, or watch one still going.

    \b
    Example:
      spotrain resume digits-20261129-2145-a1b2
      spotrain resume digits-20261129-2145-a1b2 --json   # the live view on stderr, the end as JSON

    Exit status: as `spotrain launch`'s.
    """
    from spotrain.cost import run_bill
    from spotrain.render import cost_table, outcome_json
    from spotrain.report.summary import bill_json
    from spotrain.workspace import controller_for_run

    out = console(stderr=as_json)
    with controller_for_run(run_id) as ctl:
        from spotrain.detached import refuse_attached

        refuse_attached(ctl.store, run_id)
        ctl.refuse_attached_beside_stand_in()
        with live_view(out, ctl.store, run_id) as show:
            outcome = ctl.orchestrator(show).resume(run_id)
        out.print(outcome_line(run_id, outcome), markup=False, highlight=False, soft_wrap=True)
        bill = run_bill(ctl.store, run_id)
    out.print(cost_table(bill))
    if as_json:
        _echo_json(outcome_json(outcome, bill_json(bill)))
    exit_for(outcome)


@click.command()
@click.argument("run_id", metavar="[RUN]", required=False, type=RUN_ID)
@aws_options(region_help=RUNS_REGION_HELP)
@json_option
def status(run_id: str | None, as_json: bool) -> None:
    """Runs, their state, attempts, epoch, best accuracy and $ so far.

    \b
    Examples:
      spotrain status
      spotrain status digits-20261129-2145-a1b2 --json
    """
    from spotrain.controller import status_rows

    handed = detached_view(run_id) if run_id else None  # a detached run's attempts are in its ledger
    rows = status_rows(run_id)  # after the view: a detached run's end read from its ledger is in the store
    if as_json:
        if handed is None:
            _echo_json(rows)
            return
        from spotrain.detached import view_json

        _echo_json([{**r, "detached": view_json(handed)} for r in rows])
        return
    notes = [f"{row['run']}: {row['trainer']}" for row in rows if row.get("trainer")]
    text = None if handed else _status_plain(rows)
    if text is not None:
        click.echo(text)
        for note in notes:
            click.echo(note)
        return
    from spotrain.render import status_table

    out = console()
    out.print(status_table(rows))
    if handed:
        from spotrain.render import attempts_table

        out.print(attempts_table(handed))
    for note in notes:
        out.print(note, markup=False, highlight=False, soft_wrap=True)


def _status_plain(rows: list[dict]) -> str | None:
    """The table as plain text when stdout is no terminal (a pipe, a file, a script): what rich would
    write there, without importing it (`status` stays fast). None on a terminal or with FORCE_COLOR
    (rich draws styles there), or when the table needs rich's wrapping."""
    import os
    import sys

    if sys.stdout.isatty() or os.environ.get("FORCE_COLOR"):
        return None
    from spotrain.render import status_text

    columns = os.environ.get("COLUMNS", "")  # rich's width off a terminal: COLUMNS, else 80
    return status_text(rows, int(columns) if columns.isdigit() and int(columns) > 0 else 80)


@click.command()
@click.argument("run_id", metavar="[RUN]", required=False, type=RUN_ID)
@json_option
def cost(run_id: str | None, as_json: bool) -> None:
    """Wall-clock, GPU-hours, spot $, EBS $, S3 $, the on-demand equivalent, and time and $ to target.

    \b
    Examples:
      spotrain cost                      # the newest run
      spotrain cost digits-20261129-2145-a1b2 --json
    """
    from spotrain import workspace
    from spotrain.cost import run_bill
    from spotrain.detached import view_json
    from spotrain.render import attempts_table, cost_table
    from spotrain.report.summary import bill_json

    run_id = run_id or workspace.newest_run()
    handed = detached_view(run_id)  # a detached run is billed from its ledger, by the same rules
    if handed:
        return _echo_json(view_json(handed)) if as_json else console().print(attempts_table(handed))
    with workspace.controller_for_run(run_id) as ctl:
        bill = run_bill(ctl.store, run_id)
    if as_json:
        _echo_json(bill_json(bill))
    else:
        console().print(cost_table(bill))


@click.command()
@click.argument("run_id", metavar="RUN", type=RUN_ID)
@click.option("--attempt", type=int, help="Which attempt's log (default: the newest).")
@click.option("--node", type=int, default=0, help="A multi-node run's node (default: 0, the run's view).")
@click.option(
    "-f",
    "--follow",
    is_flag=True,
    help="Keep printing as the trainer writes, on into later attempts, until the run ends.",
)
@aws_options(region_help=RUN_REGION_HELP)
def logs(run_id: str, attempt: int | None, follow: bool, node: int) -> None:
    """The trainer's log of one attempt (every attempt's log is kept, of every node).

    \b
    Examples:
      spotrain logs digits-20261129-2145-a1b2
      spotrain logs digits-20261129-2145-a1b2 --attempt 1
      spotrain logs digits-20261129-2145-a1b2 --attempt 1 --node 1
    """
    from spotrain.controller import attempt_log, node_log
    from spotrain.workspace import controller_for_run

    if node and follow:
        raise SpotrainError(
            f"--follow with --node {node}: a node's log is kept when its attempt ends", "follow node 0's"
        )
    with controller_for_run(run_id) as ctl:
        full = ctl.run.run_id
        if ctl.store.events(full, kinds=["detached"]):  # its attempts are its group's: the log is in S3
            from spotrain import detached

            lines = detached.attempt_log(ctl.cloud, ctl.store, full, attempt, follow=follow)
        elif node == 0:
            lines = attempt_log(ctl, run_id, attempt, follow=follow)
        else:
            lines = node_log(ctl, run_id, attempt, node)
        for line in lines:
            click.echo(line)


@click.command()
@click.argument("run_id", metavar="RUN", type=RUN_ID)
@click.option("--out", type=click.Path(path_type=Path), help="Directory for it (default: STATE/reports/RUN).")
@click.option("--open", "open_it", is_flag=True, help="Open the HTML page in a browser.")
def report(run_id: str, out: Path | None, open_it: bool) -> None:
    """One HTML page and its PNGs: accuracy against time and $ (broken between attempts), throughput,
    cumulative $ against on demand, schedule, attempts, prices; and the summary table.

    \b
    Examples:
      spotrain report digits-20261129-2145-a1b2
      spotrain report digits-20261129-2145-a1b2 --out /tmp/report --open
    """
    import json

    from spotrain.detached import view_json
    from spotrain.report import build_report
    from spotrain.workspace import controller_for_run

    with controller_for_run(run_id) as ctl:
        done = build_report(ctl.store, run_id, out or ctl.state_dir / "reports" / run_id)
    handed = detached_view(run_id)
    if handed:  # its attempts are in its ledger: kept beside the page
        (done.html.parent / "detached.json").write_text(json.dumps(view_json(handed), indent=1, default=str))
        click.echo(f"attempts: {len(handed.rows)} (its ledger), in {done.html.parent / 'detached.json'}")
    for what in done.missing:
        click.echo(f"missing: {what}", err=True)
    click.echo(f"report: {done.html}")
    if open_it:
        import webbrowser

        webbrowser.open(done.html.resolve().as_uri())


@click.command()
@click.argument("run_ids", metavar="RUN...", nargs=-1, required=True, type=RUN_ID)
@json_option
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Directory for compare.html (default: STATE/reports/compare; none with --json).",
)
def compare(run_ids: tuple[str, ...], as_json: bool, out: Path | None) -> None:
    """The report's summary of several runs side by side (time and $ to target, savings, lost work),
    and one HTML page with the runs overlaid: accuracy against time and $, cumulative $, throughput.

    \b
    Example:
      spotrain compare digits-20261129-2145-a1b2 digits-20261129-2210-c3d4 --out /tmp/compare
    """
    from spotrain.report import build_compare, compare_table, load_run, summarize
    from spotrain.workspace import controller_for_run

    runs = []
    for run_id in run_ids:
        with controller_for_run(run_id) as ctl:
            runs.append(load_run(ctl.store, run_id))
            state_dir = ctl.state_dir
    summaries = [summarize(d) for d in runs]
    if as_json:
        _echo_json(summaries)
        return
    console().print(compare_table(summaries))
    try:
        done = build_compare(runs, out or state_dir / "reports" / "compare")
    except SpotrainError as err:
        click.echo(f"compare page not written: {err.message} ({err.hint})", err=True)
        return
    click.echo(f"compare: {done.html}")


@click.command()
@click.argument("run_id", metavar="[RUN]", required=False, type=RUN_ID)
@click.option("--all", "all_runs", is_flag=True, help="Every run's leftovers.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask.")
@aws_options(region_help=RUNS_REGION_HELP)
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


RUN_COMMANDS = (resume, status, cost, logs, report, compare, down)
