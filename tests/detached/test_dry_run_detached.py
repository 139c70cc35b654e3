"""The detached dry-run end to end (issue 15's Done when): `launch --dry-run --detach` with an interruption
pinned to step 30 (and a rebalance recommendation at step 20) returns; then, with no spotrain process of the test's but the dry-run's AWS stand-in,
the group's first instance is interrupted at step 30, its replacement resumes from that step in another
zone and reaches the digits target, and the group ends at desired 0. `status`, `cost` and `report` show
the two attempts, the cost is the rules' sum over the ledger; after `down`, moto holds nothing of the
run and the stand-in exits. Every CLI call is its own process, as a user's would be."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spotrain import detached
from spotrain.cloud import TAG_RUN
from spotrain.cloud.aws import detach
from spotrain.cloud.local import stand_in_files as stand_in

REPO = Path(__file__).resolve().parents[2]
RUN_DEADLINE_S = 240.0  # digits trains in seconds; twice, with two boots, on a loaded 2-core machine


def spotrain(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SPOTRAIN_NOTICE_AT"} | {
        "SPOTRAIN_HOME": str(home),
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
        "SPOTRAIN_STAND_IN_LINGER_S": "600",  # the ended run's group stays for `status` until `down`
        "COLUMNS": "200",
    }
    cmd = [sys.executable, "-m", "spotrain.cli", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO)


def attached_view(home: Path, run_id: str) -> dict:
    out = spotrain(home, "attach", run_id, "--json")
    assert out.returncode in (0, 1), out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_resources(sess, run_id: str) -> dict[str, list[str]]:
    """What moto holds of the run: groups, templates, live instances, security groups, key pairs."""
    asg, ec2 = (
        sess.client("autoscaling", region_name="us-east-1"),
        sess.client("ec2", region_name="us-east-1"),
    )
    tagged = [{"Name": f"tag:{TAG_RUN}", "Values": [run_id]}]
    live = [
        i["InstanceId"]
        for r in ec2.describe_instances(Filters=tagged)["Reservations"]
        for i in r["Instances"]
        if i["State"]["Name"] not in ("terminated", "shutting-down")
    ]
    return {
        "groups": [
            g["AutoScalingGroupName"]
            for g in asg.describe_auto_scaling_groups()["AutoScalingGroups"]
            if run_id in g["AutoScalingGroupName"]
        ],
        "templates": [
            t["LaunchTemplateName"]
            for t in ec2.describe_launch_templates()["LaunchTemplates"]
            if run_id in t["LaunchTemplateName"]
        ],
        "instances": live,
        "security_groups": [
            g["GroupId"] for g in ec2.describe_security_groups(Filters=tagged)["SecurityGroups"]
        ],
        "keys": [k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"] if run_id in k["KeyName"]],
    }


@pytest.mark.slow
def test_a_detached_dry_run_is_interrupted_resumed_in_another_zone_and_ends_succeeded(
    isolated_env: Path,
) -> None:
    home, state_dir = isolated_env, isolated_env / "dry-run"
    t0 = time.monotonic()
    launched = spotrain(
        home,
        "launch",
        "--dry-run",
        "--recipe",
        "digits",
        "--detach",
        "--inject-interruption",
        "step:30",
        "--inject-rebalance",
        "step:20",
        "-y",
    )
    print(f"launch --dry-run --detach returned in {time.monotonic() - t0:.1f} s")
    assert launched.returncode == 0, launched.stdout + launched.stderr
    assert "handed to Auto Scaling group" in launched.stdout
    run_id = next(w for w in launched.stdout.split() if w.startswith("digits-"))
    keeper = stand_in.stand_in_pid(state_dir)
    assert keeper is not None  # the only process left: the dry-run's AWS
    try:
        check_the_run(home, state_dir, run_id)
    finally:
        if stand_in.stand_in_pid(state_dir) is not None:  # a failed check: its instances end with it
            os.kill(keeper, signal.SIGTERM)


def check_the_run(home: Path, state_dir: Path, run_id: str) -> None:

    deadline = time.monotonic() + RUN_DEADLINE_S
    view = attached_view(home, run_id)
    while view["state"] == "RUNNING" and time.monotonic() < deadline:
        view = attached_view(home, run_id)
    assert view["state"] == "SUCCEEDED", view
    first, second = view["attempts"]
    assert (first["exit_code"], second["exit_code"]) == (75, 0)
    assert first["zone"] != second["zone"]  # the replacement went to another zone
    assert view["group"]["desired"] == 0 and view["group"]["instances"] == []

    run_dir = (
        state_dir / "stand-in" / "instances" / second["instance_id"] / "opt" / "spotrain" / "runs" / run_id
    )
    assert f"resumed from {run_dir}/ckpt/step-000030" in (run_dir / "train.log").read_text()
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    (done,) = [e for e in events if e["kind"] == "done"]
    assert done["best"] >= 0.98

    status = spotrain(home, "status", run_id, "--json")
    assert status.returncode == 0, status.stderr
    (row,) = json.loads(status.stdout)
    assert [a["attempt"] for a in row["detached"]["attempts"]] == [1, 2]
    cost = spotrain(home, "cost", run_id, "--json")
    assert cost.returncode == 0, cost.stderr
    billed = json.loads(cost.stdout)
    assert len(billed["attempts"]) == 2
    report = spotrain(home, "report", run_id)
    assert report.returncode == 0, report.stderr
    html = Path(report.stdout.strip().splitlines()[-1].removeprefix("report: "))
    assert len(json.loads((html.parent / "detached.json").read_text())["attempts"]) == 2

    attached = spotrain(home, "launch", "--dry-run", "--recipe", "digits", "-y")
    assert attached.returncode == 2 and "while a detached dry-run run lives" in attached.stderr, (
        attached.stderr
    )

    from spotrain.cloud.local import LocalCloud

    cloud = LocalCloud(state_dir)  # joins the stand-in's moto (and holds it up until closed)
    try:
        sess, bucket = cloud.session(), cloud.bucket()
        ledger = detach.read_ledger(sess, region="us-east-1", bucket=bucket, run_id=run_id)
        settings = detach.read_settings(sess, region="us-east-1", bucket=bucket, run_id=run_id)
        first_rec, second_rec = ledger.attempts
        assert (
            first_rec.rebalance_at is not None and second_rec.rebalance_at is None
        )  # step 20, before the notice
        assert billed["total_usd"] == pytest.approx(
            detached.ledger_cost(ledger, settings).total_usd, abs=1e-12
        )
        assert run_resources(sess, run_id)["groups"]  # the ended run's group is still there for `down`
        downed = spotrain(home, "down", run_id, "-y")
        assert downed.returncode == 0, downed.stdout + downed.stderr
        assert run_resources(sess, run_id) == {
            "groups": [],
            "templates": [],
            "instances": [],
            "security_groups": [],
            "keys": [],
        }
    finally:
        cloud.close()
    deadline = time.monotonic() + 60
    while stand_in.stand_in_pid(state_dir) is not None and time.monotonic() < deadline:
        time.sleep(0.2)  # a poll's pause, bounded by the deadline
    assert stand_in.stand_in_pid(state_dir) is None
