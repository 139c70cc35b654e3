"""`spotrain smoke`: its command and its table (cli.py is the command tree; this one is long enough
to stand alone). One library call, `smoke.run_smoke`; exit 0 when every check passed, 1 otherwise,
130 on Ctrl-C after the cleanup."""

from __future__ import annotations

import sys

import click

from spotrain.terminal import EXIT_CTRL_C, EXIT_FAILED


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
@click.option("--region", default="us-east-1", show_default=True, help="AWS region to run in.")
@click.option("--instance", default=None, help="EC2 type (default: the cheapest small GPU spot type now).")
@click.option("--max-usd", type=float, default=2.0, show_default=True, help="Down the run past this bill.")
@click.option("--max-minutes", type=float, default=45.0, show_default=True, help="Down the run past this.")
@click.option("--dry-run", is_flag=True, help="The same steps on this machine (moto), no AWS.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask before billing (real AWS only).")
def smoke(
    region: str, instance: str | None, max_usd: float, max_minutes: float, dry_run: bool, yes: bool
) -> None:
    """Check the real path end to end for a few cents: one small GPU spot instance trains digits, AWS
    Fault Injection Service interrupts it once (SIGTERM stands in where FIS is refused, and the output
    says so), the run resumes on another instance in another zone, and the cost is checked. Everything
    it made is removed at the end, also on Ctrl-C. Needs `spotrain init` (again, for the FIS role).

    \b
    Examples:
      spotrain smoke --dry-run -y                      # the same steps on this machine
      spotrain smoke --region us-east-1 --instance g4dn.xlarge --max-usd 1

    Exit status: 0 every check passed, 1 one failed, 2 bad input, 130 Ctrl-C (after the cleanup).
    """
    from rich.console import Console

    from spotrain.smoke import SmokeOptions, run_smoke

    console = Console(width=120)
    if not dry_run and not yes:
        click.confirm(
            f"this bills a few cents (at most ${max_usd:g}) to your AWS account; go on?", abort=True
        )
    options = SmokeOptions(region, instance, max_usd, max_minutes, dry_run)
    try:
        result = run_smoke(options, on_step=lambda line: console.print(line, markup=False, highlight=False))
    except KeyboardInterrupt:
        console.print("interrupted (Ctrl-C): everything the smoke made was removed", markup=False)
        sys.exit(EXIT_CTRL_C)
    console.print(smoke_table(result))
    if not result.ok:
        sys.exit(EXIT_FAILED)
