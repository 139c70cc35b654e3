"""The commands about the AWS account and the real path rather than one run, registered by cli.py:
`prices`, `init`, and `smoke` (one library call, `smoke.run_smoke`; exit 0 when every check passed,
1 otherwise, 130 on Ctrl-C after the cleanup)."""

from __future__ import annotations

import json
import sys

import click

from spotrain.cli_options import aws_options, complete_instance, console, json_option
from spotrain.terminal import EXIT_CTRL_C, EXIT_FAILED, render_prices


def smoke_table(result):
    from rich.table import Table

    from spotrain.formats import usd

    out = Table(
        title=f"spotrain smoke: run {result.run_id} on {result.instance_type}",
        caption=f"interruption: {result.interruption or 'none'} ({result.interruption_why}); "
        f"cost {usd(result.total_usd)} (on demand {usd(result.on_demand_usd)}); "
        f"cleanup removed {len(result.removed)}: {', '.join(result.removed) or 'nothing'}",
        caption_justify="left",
    )
    for name in ("check", "ok", "detail"):
        out.add_column(name)
    for check in result.checks:
        out.add_row(check.name, "yes" if check.ok else "NO", check.detail)
    return out


@click.command()
@aws_options(region_help="AWS region to run in (default: us-east-1).")
@click.option(
    "--instance",
    default=None,
    help="EC2 type (default: the cheapest small GPU spot type now).",
    shell_complete=complete_instance,
)
@click.option("--max-usd", type=float, default=2.0, show_default=True, help="Down the run past this bill.")
@click.option("--max-minutes", type=float, default=45.0, show_default=True, help="Down the run past this.")
@click.option("--dry-run", is_flag=True, help="The same steps on this machine (moto), no AWS.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask before billing (real AWS only).")
@json_option
def smoke(
    instance: str | None, max_usd: float, max_minutes: float, dry_run: bool, yes: bool, as_json: bool
) -> None:
    """Check the real path end to end for a few cents: one small GPU spot instance trains digits, AWS
    Fault Injection Service interrupts it once (SIGTERM stands in where FIS is refused, and the output
    says so), the run resumes on another instance in another zone, and the cost is checked. Everything
    it made is removed at the end, also on Ctrl-C. Needs `spotrain init` (again, for the FIS role).

    \b
    Examples:
      spotrain smoke --dry-run -y                      # the same steps on this machine
      spotrain smoke --region us-east-1 --instance g4dn.xlarge --max-usd 1
      spotrain smoke --dry-run -y --json               # the steps on stderr, the checks as JSON

    Exit status: 0 every check passed, 1 one failed, 2 bad input, 130 Ctrl-C (after the cleanup).
    """
    from spotrain.render import smoke_json
    from spotrain.settings import load_settings
    from spotrain.smoke import SmokeOptions, run_smoke

    out = console(stderr=as_json)
    if not dry_run and not yes:
        click.confirm(
            f"this bills a few cents (at most ${max_usd:g}) to your AWS account; go on?",
            abort=True,
            err=as_json,
        )
    region = load_settings().region or "us-east-1"
    options = SmokeOptions(region, instance, max_usd, max_minutes, dry_run)
    try:
        result = run_smoke(
            options, on_step=lambda line: out.print(line, markup=False, highlight=False, soft_wrap=True)
        )
    except KeyboardInterrupt:
        out.print("interrupted (Ctrl-C): everything the smoke made was removed", markup=False, soft_wrap=True)
        sys.exit(EXIT_CTRL_C)
    out.print(smoke_table(result))
    if as_json:
        click.echo(json.dumps(smoke_json(result), indent=1))
    if not result.ok:
        sys.exit(EXIT_FAILED)


@click.command()
@click.option(
    "--instance",
    "instance_type",
    required=True,
    help="EC2 instance type, e.g. p3.16xlarge.",
    shell_complete=complete_instance,
)
@aws_options()
@click.option(
    "--dry-run", is_flag=True, help="The dry-run's seeded prices (moto), as `launch --dry-run` sees them."
)
@click.option(
    "--nodes",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Instances of the type one run takes (a multi-node run's `nodes:`): N x the price beside it.",
)
@json_option
def prices(instance_type: str, dry_run: bool, nodes: int, as_json: bool) -> None:
    """Spot price per zone now, its discount against on-demand, and its range over 24 h.

    \b
    Examples:
      spotrain prices --instance p3.16xlarge
      spotrain prices --instance g5.xlarge --region eu-west-1 --profile work
      spotrain prices --instance p3.16xlarge --dry-run --json   # no AWS account needed
      spotrain prices --instance p3.16xlarge --nodes 4          # what 4 nodes of it cost an hour
    """
    from spotrain.render import prices_json
    from spotrain.workspace import price_table

    table = price_table(instance_type, dry_run=dry_run)
    if as_json:
        click.echo(json.dumps(prices_json(table, nodes=nodes), indent=1))
    else:
        render_prices(table, console(), nodes=nodes)


@click.command()
@aws_options()
@click.option("--bucket", default=None, help="Checkpoint bucket name (default: spotrain-ACCOUNT-REGION).")
@click.option(
    "--data-bucket",
    "data_buckets",
    multiple=True,
    metavar="BUCKET[/PREFIX]",
    help="A dataset the instances may read (repeatable; replaces the stack's list; default: keep it).",
)
@click.option("--print-policy", is_flag=True, help="Print the controller's IAM policy and exit.")
def init(bucket: str | None, data_buckets: tuple[str, ...], print_policy: bool) -> None:
    """Create or update the checkpoint bucket and the instance role (infra/spotrain.yaml).

    Run it once per account and region before the first real launch; running it again updates the
    stack, or says it is up to date.

    \b
    Examples:
      spotrain init --region us-east-1
      spotrain init --data-bucket my-datasets/imagenet           # the instances may read that prefix
      spotrain init --print-policy > controller-policy.json   # the IAM policy spotrain itself needs
    """
    from spotrain.cloud.aws import session
    from spotrain.cloud.aws import stack as infra
    from spotrain.settings import load_settings

    if print_policy:
        click.echo(infra.print_policy(bucket=bucket), nl=False)
        return
    chosen = load_settings()
    done = infra.init(
        session(profile=chosen.profile),
        region=chosen.region,
        bucket=bucket,
        data_buckets=data_buckets or None,
    )
    click.echo(f"stack {done.stack_name} in {done.region}: {done.status}")
    click.echo(f"bucket s3://{done.outputs.bucket}, instance profile {done.outputs.instance_profile_name}")
    click.echo(f"outputs saved to {done.state_file}")
