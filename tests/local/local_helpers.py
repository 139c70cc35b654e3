"""Helpers for the dry-run cloud's tests: launch an attempt, run the real trainer on an instance."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from spotrain.cloud.aws.attempt import AttemptRequest, StartedAttempt
from spotrain.cloud.aws.instances import LaunchSpec, region_quotes
from spotrain.cloud.local import LocalCloud
from spotrain.plan import order_zones
from spotrain.remote import DetachedProcess, connect, start_detached

REPO = Path(__file__).resolve().parents[2]


def launch(
    cloud: LocalCloud,
    run_id: str = "run1",
    attempt: str = "a1",
    *,
    instance_type: str = "p3.16xlarge",
    regions: Sequence[str] = ("us-east-1",),
    demote: Sequence[str] = (),
) -> StartedAttempt:
    spec = LaunchSpec(
        run_id=run_id, attempt_id=attempt, owner="tester", instance_type=instance_type, root_gb=120
    )
    quotes = region_quotes(cloud.session(), instance_type=instance_type, regions=regions)
    order = order_zones(quotes, instance_type=instance_type, demote=demote)  # the plan's zone order
    req = AttemptRequest(spec=spec, regions=regions, state_dir=cloud.state_dir, order=order)
    return cloud.start_attempt(req)


def start_trainer(
    cloud: LocalCloud, started: StartedAttempt, *args: str, env: dict[str, str] | None = None
) -> tuple[DetachedProcess, Path]:
    """The real trainer on the instance, detached, as the orchestrator starts it; the repo is its bundle."""
    instance_id = started.instance.instance_id
    transport = connect(cloud.target(started))
    run_dir = f"{cloud.workdir(instance_id)}/runs/run1"
    argv = [cloud.python(instance_id), "-m", "trainer.train", "--recipe", "digits", "--run-dir", run_dir]
    argv += ["--batch-size", "8", "--log-every", "5", *args]
    full = {**cloud.instance_env(instance_id), "OMP_NUM_THREADS": "1", **(env or {})}
    proc = start_detached(transport, argv, run_dir=run_dir, cwd=str(REPO), env=full)
    return proc, cloud.instance_dir(instance_id) / run_dir.removeprefix("~/")  # HOME is the instance dir


def exit_code(run_dir: Path) -> int | None:
    path = run_dir / "exit_code"
    return int(path.read_text()) if path.exists() else None
