"""The command tree. Commands parse, call one library function and render its result; no logic here."""

from __future__ import annotations

import sys

import click

from spotrain import __version__
from spotrain.cloud import PriceTable
from spotrain.errors import SpotrainError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="spotrain")
def cli() -> None:
    """Train neural nets on AWS spot instances for a fraction of the on-demand price."""


@cli.command()
@click.option("--instance", "instance_type", required=True, help="EC2 instance type, e.g. p3.16xlarge.")
@click.option("--region", default=None, help="AWS region (default: the profile's, else us-east-1).")
@click.option("--profile", default=None, help="AWS profile (default: the credential chain).")
def prices(instance_type: str, region: str | None, profile: str | None) -> None:
    """Spot price per zone now, its discount against on-demand, and its range over 24 h."""
    from spotrain.cloud.aws.prices import quote

    table = quote(instance_type=instance_type, region=region, profile=profile)
    _render_prices(table)


def _render_prices(table: PriceTable) -> None:
    from rich.console import Console
    from rich.table import Table

    out = Table(
        title=f"{table.instance_type} spot prices in {table.region}, cheapest first",
        caption=f"on-demand ${table.on_demand_usd_per_hour:.3f}/h (list price {table.on_demand_as_of}), "
        f"{table.now:%Y-%m-%d %H:%M} UTC",
        caption_justify="left",
    )
    for name in ("zone", "spot $/h", "vs on-demand", "24 h low", "24 h high"):
        out.add_column(name, justify="left" if name == "zone" else "right")
    for q in table.zones:
        out.add_row(
            q.zone,
            f"{q.usd_per_hour:.4f}",
            f"-{q.discount:.0%}",
            f"{q.low_24h:.4f}",
            f"{q.high_24h:.4f}",
        )
    Console(width=100).print(out)


@cli.command()
@click.option("--region", default=None, help="AWS region (default: the profile's, else us-east-1).")
@click.option("--bucket", default=None, help="Checkpoint bucket name (default: spotrain-ACCOUNT-REGION).")
@click.option("--profile", default=None, help="AWS profile (default: the credential chain).")
@click.option("--print-policy", is_flag=True, help="Print the controller's IAM policy and exit.")
def init(region: str | None, bucket: str | None, profile: str | None, print_policy: bool) -> None:
    """Create or update the checkpoint bucket and the instance role (infra/spotrain.yaml)."""
    from spotrain import infra
    from spotrain.cloud.aws import session

    if print_policy:
        click.echo(infra.print_policy(bucket=bucket), nl=False)
        return
    done = infra.init(session(profile=profile), region=region, bucket=bucket)
    click.echo(f"stack {done.stack_name} in {done.region}: {done.status}")
    click.echo(f"bucket s3://{done.outputs.bucket}, instance profile {done.outputs.instance_profile_name}")
    click.echo(f"outputs saved to {done.state_file}")


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
