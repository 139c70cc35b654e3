"""`launch --detach`'s hand-off of a planned, stored run, on the dry-run's cloud in this process (its moto,
its stack's bucket and instance profile): the group over the plan's zones of the first region, the
settings and the bundle in the run's prefix, a `detached` event; then `down` leaves nothing of it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from spotrain import config, detached
from spotrain.cloud.aws import autoscaling, sweep
from spotrain.controller import create_run, prepare
from spotrain.errors import SpotrainError
from spotrain.onboard.ledger import RunSettings, settings_key
from spotrain.workspace import open_controller

pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse AWS")


def test_a_planned_run_is_handed_to_a_group_and_down_removes_it(isolated_env: Path) -> None:
    spec = config.load_spec(None, {"recipe": "digits", "dry_run": True, "max_attempts": 3, "budget": 1.0})
    with open_controller(dry_run=True, boot_delay_s=0.0) as ctl:
        spec, plan = prepare(ctl, spec)
        run_id = create_run(ctl, spec, plan)
        state = detached.hand_off_run(ctl.cloud, ctl.store, run_id, state_dir=ctl.state_dir)
        sess = ctl.cloud.session()
        (event,) = [e.data for e in ctl.store.events(run_id, kinds=["detached"])]
        assert event["group"] == state.name == autoscaling.group_name(run_id)
        assert (state.min_size, state.max_size, state.desired) == (0, 1, 1) and state.capacity_rebalance
        assert len(state.subnets) == len(event["zones"]) >= 2  # one subnet per allowed zone of the region
        s3 = sess.client("s3", region_name=event["region"])
        body = s3.get_object(Bucket=ctl.cloud.bucket(), Key=settings_key(run_id))["Body"].read().decode()
        settings = RunSettings.from_json(body)
        assert (settings.max_attempts, settings.budget_usd, settings.group) == (3, 1.0, state.name)
        assert set(settings.zone_prices) == set(event["zones"])
        with pytest.raises(SpotrainError, match="is detached: its Auto Scaling group starts its attempts"):
            detached.refuse_attached(ctl.store, run_id)  # what `spotrain resume` asks first
        ctl.orchestrator().down(run_id)  # `spotrain down RUN`
        assert autoscaling.describe_group(sess, event["region"], run_id) is None
        assert sweep.find_leftovers(sess, regions=[event["region"]], run_id=run_id) == []


def test_the_view_shows_the_ledger_the_group_and_the_cost(isolated_env: Path) -> None:
    from rich.console import Console

    from spotrain.cloud.aws import detach
    from spotrain.onboard.ledger import AttemptRecord
    from spotrain.onboard.supervisor import RunBucket
    from spotrain.render import attempts_table

    spec = config.load_spec(None, {"recipe": "digits", "dry_run": True})
    with open_controller(dry_run=True, boot_delay_s=0.0) as ctl:
        spec, plan = prepare(ctl, spec)
        run_id = create_run(ctl, spec, plan)
        state = detached.hand_off_run(ctl.cloud, ctl.store, run_id, state_dir=ctl.state_dir)
        member, zone, _ = state.instances[0]
        s3 = ctl.cloud.session().client("s3", region_name=state.region)
        RunBucket(s3, ctl.cloud.bucket(), run_id).write_attempt(
            AttemptRecord(1, member, "g4dn.xlarge", zone, "spot", 1000.0, 0.3, heartbeat=1030.0)
        )
        v = detached.view(ctl.cloud, ctl.store, run_id, now=1100.0)
        assert v is not None and v.state == "RUNNING" and v.rows[0].live and v.rows[0].end == 1100.0
        assert v.bill.total_usd == pytest.approx(
            detached.ledger_cost(v.ledger, _settings(ctl, run_id), live=1, now=1100.0).total_usd
        )
        console = Console(width=160, record=True)
        console.print(attempts_table(v))
        shown = console.export_text()
        assert member in shown and "RUNNING" in shown and "running" in shown
        ctl.orchestrator().down(run_id)
        gone = detached.view(ctl.cloud, ctl.store, run_id, now=1200.0)
        assert gone is not None and gone.group is None and gone.state == "ENDED"
        assert detach.bundle_key(run_id).startswith(f"runs/{run_id}/")


def _settings(ctl, run_id: str) -> RunSettings:
    from spotrain.cloud.aws import detach

    (event,) = [e.data for e in ctl.store.events(run_id, kinds=["detached"])]
    return detach.read_settings(
        ctl.cloud.session(), region=event["region"], bucket=event["bucket"], run_id=run_id
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (
            ["--recipe", "digits", "--inject-rebalance", "step:20"],
            "--inject-rebalance works in a detached dry-run",
        ),
        (["--recipe", "digits", "--detach", "--inject-rebalance", "20s"], "a training step or a share"),
        (["--detach", "--", "python", "train.py"], "--detach with your own command"),
    ],
)
def test_what_a_detached_dry_run_cannot_do_is_refused_before_anything_is_planned(
    isolated_env: Path, capsys: pytest.CaptureFixture[str], args: list[str], says: str
) -> None:
    from spotrain.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["launch", "--dry-run", "-y", *args])
    assert exited.value.code == 2
    assert says in capsys.readouterr().err
    assert not (isolated_env / "dry-run" / "state.db").exists()
    assert not (isolated_env / "dry-run" / "stand-in").exists()  # no stand-in started for it


def test_detach_true_in_a_spec_is_the_flag(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("recipe: digits\ndry_run: true\ndetach: true\n")
    assert config.load_spec(path, {}).detach is True
    assert config.load_spec(None, {"recipe": "digits"}).detach is False


def test_a_spec_env_with_detach_is_refused_not_dropped(
    isolated_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from spotrain.cli import main

    path = tmp_path / "run.yaml"
    path.write_text("recipe: digits\ndry_run: true\ndetach: true\nenv:\n  LR_SCALE: '2'\n")
    with pytest.raises(SystemExit) as exited:
        main(["launch", "-f", str(path), "-y"])
    assert exited.value.code == 2
    assert "env: with --detach" in capsys.readouterr().err
    assert not (isolated_env / "dry-run" / "stand-in").exists()


def test_a_failure_loop_in_the_ledger_ends_the_run_failed_in_status_with_the_reason(
    isolated_env: Path,
) -> None:
    """What the supervisor leaves after three failures at start (tests/detached/test_supervisor.py): three
    attempts exited 1 before a checkpoint and the run's end. `status RUN` shows it, and from then on the
    store holds the end too, so `status` of every run says FAILED and why."""
    from spotrain.onboard.ledger import AttemptRecord, RunEnd
    from spotrain.onboard.supervisor import RunBucket
    from spotrain.store import RunState

    reason = "failure loop: the last 3 attempts failed before their first checkpoint (no kernel image)"
    spec = config.load_spec(None, {"recipe": "digits", "dry_run": True})
    with open_controller(dry_run=True, boot_delay_s=0.0) as ctl:
        spec, plan = prepare(ctl, spec)
        run_id = create_run(ctl, spec, plan)
        state = detached.hand_off_run(ctl.cloud, ctl.store, run_id, state_dir=ctl.state_dir)
        member, zone, _ = state.instances[0]
        bucket = RunBucket(
            ctl.cloud.session().client("s3", region_name=state.region), ctl.cloud.bucket(), run_id
        )
        for n in (1, 2, 3):
            start = 1000.0 + 100 * n
            bucket.write_attempt(
                AttemptRecord(n, f"{member}{n}", "g4dn.xlarge", zone, "spot", start, 0.3, heartbeat=start + 5)
            )
        bucket.write_end(RunEnd("FAILED", reason, 1400.0, attempt=3))
        ctl.cloud.session().client("autoscaling", region_name=state.region).update_auto_scaling_group(
            AutoScalingGroupName=state.name, MinSize=0, DesiredCapacity=0
        )
        assert ctl.store.get_run(run_id).state == RunState.REQUESTING  # nothing has read the ledger yet

    env = {**os.environ, "COLUMNS": "200"}
    shown = subprocess.run(
        [sys.executable, "-m", "spotrain.cli", "status", run_id], capture_output=True, text=True, env=env
    )
    assert shown.returncode == 0, shown.stderr
    assert f"(detached): FAILED: {reason}" in " ".join(shown.stdout.split())
    every = subprocess.run(
        [sys.executable, "-m", "spotrain.cli", "status", "--json"], capture_output=True, text=True, env=env
    )
    (row,) = json.loads(every.stdout)
    assert (row["state"], row["reason"]) == ("failed", reason)
