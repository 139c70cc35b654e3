"""A detached run's world on a moto server: the run's bucket and settings, a launch template and a group
of one instance, that instance's fake IMDS, and the supervisor run as the instance runs it: a real
subprocess, `python -m onboard.supervisor` from a bundle directory holding only onboard/ (so it needs
nothing of spotrain), with a stub trainer."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import boto3
import pytest

from spotrain.cloud.local.imds import FakeImds
from spotrain.onboard.ledger import Ledger, RunSettings, settings_key
from spotrain.onboard.supervisor import RunBucket

REPO = Path(__file__).resolve().parents[2]
R, BUCKET, RUN = "us-east-1", "spotrain-test-runs", "r-det"
GROUP = f"spotrain-{RUN}"
PRICES = {f"{R}a": 0.30, f"{R}b": 0.25}

STUB = """
import json, sys, time
from pathlib import Path
mode, run_dir = sys.argv[1], Path(sys.argv[sys.argv.index("--run-dir") + 1])
run_dir.mkdir(parents=True, exist_ok=True)
def event(kind, **kw):
    with (run_dir / "events.jsonl").open("a") as f:
        f.write(json.dumps({"t": time.time(), "kind": kind, **kw}) + "\\n")
print("stub trainer", mode, sys.argv[2:])
if mode == "fail-at-start":
    event("error", message="CUDA error: no kernel image is available (stub)")
    sys.exit(1)
if mode == "interrupted":
    event("rebalance", source="injected", step=8)
event("checkpoint", step=10, where="local")
event("checkpoint", step=10, where="s3")
sys.exit({"done": 0, "interrupted": 75, "fail-late": 1}[mode])
"""


@dataclass
class World:
    s3: Any
    asg: Any
    imds: FakeImds
    bundle: Path
    run_dir: Path
    endpoint: str

    def member(self) -> str:
        g = self.asg.describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])["AutoScalingGroups"][0]
        live = [i["InstanceId"] for i in g["Instances"] if i["LifecycleState"] == "InService"]
        assert len(live) == 1, g["Instances"]
        return live[0]

    def price_in_force(self, zone: str) -> float:
        """moto's spot price for the group's type in `zone` now (the test's own reading)."""
        ec2 = boto3.client("ec2", region_name=R)
        rows = ec2.describe_spot_price_history(
            InstanceTypes=["g4dn.xlarge"], AvailabilityZone=zone, ProductDescriptions=["Linux/UNIX"]
        )["SpotPriceHistory"]
        return float(max(rows, key=lambda r: r["Timestamp"])["SpotPrice"])

    def desired(self) -> int:
        g = self.asg.describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])["AutoScalingGroups"][0]
        return g["DesiredCapacity"]

    def write_settings(self, mode: str, **changes: Any) -> RunSettings:
        settings = RunSettings(
            run_id=RUN,
            bucket=BUCKET,
            region=R,
            group=GROUP,
            instance_type="g4dn.xlarge",
            trainer_args=[str(self.bundle / "stub.py"), mode, "--run-dir", str(self.run_dir)],
            zone_prices=PRICES,
            heartbeat_s=0.2,
        )
        settings = replace(settings, **changes)
        self.s3.put_object(Bucket=BUCKET, Key=settings_key(RUN), Body=settings.to_json().encode())
        return settings

    def boot(
        self, *, reclaim_wait_s: float = 0.0, python: str = sys.executable
    ) -> subprocess.CompletedProcess[str]:
        """The instance now in the group boots: the IMDS says it is that instance, the supervisor runs."""
        cmd, env = self.supervisor(reclaim_wait_s=reclaim_wait_s, python=python)
        return subprocess.run(cmd, cwd=self.bundle, env=env, capture_output=True, text=True, timeout=60)

    def supervisor(
        self, *, reclaim_wait_s: float = 0.0, python: str = sys.executable
    ) -> tuple[list[str], dict[str, str]]:
        """The supervisor's command and environment as the instance now in the group runs it."""
        self.imds.instance_id = self.member()
        env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "SPOTRAIN_NOTICE_AT"}} | {
            "AWS_ENDPOINT_URL": self.endpoint,
            "SPOTRAIN_IMDS_URL": self.imds.url,
            "OMP_NUM_THREADS": "1",
        }
        cmd = [sys.executable, "-m", "onboard.supervisor", "--bucket", BUCKET, "--run-id", RUN]
        cmd += ["--region", R, "--run-dir", str(self.run_dir), "--reclaim-wait-s", str(reclaim_wait_s)]
        cmd += ["--python", python]
        return cmd, env

    def ledger(self) -> Ledger:
        return RunBucket(self.s3, BUCKET, RUN).ledger()


@pytest.fixture
def world(moto_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    # moto's backends live in this process, shared by every server it starts: begin empty.
    urllib.request.urlopen(urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST"), timeout=10)
    sess = boto3.Session(region_name=R)
    s3, ec2, asg = sess.client("s3"), sess.client("ec2"), sess.client("autoscaling")
    s3.create_bucket(Bucket=BUCKET)
    subnets = {s["AvailabilityZone"]: s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]}
    tid = ec2.create_launch_template(
        LaunchTemplateName=GROUP,
        LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "g4dn.xlarge"},
    )["LaunchTemplate"]["LaunchTemplateId"]
    asg.create_auto_scaling_group(
        AutoScalingGroupName=GROUP,
        LaunchTemplate={"LaunchTemplateId": tid, "Version": "$Latest"},
        MinSize=0,
        MaxSize=1,
        DesiredCapacity=1,
        VPCZoneIdentifier=f"{subnets[f'{R}a']},{subnets[f'{R}b']}",
    )
    bundle = tmp_path / "bundle"
    shutil.copytree(REPO / "spotrain" / "onboard", bundle / "onboard")
    (bundle / "stub.py").write_text(STUB, encoding="utf-8")
    imds = FakeImds("i-unset", f"{R}a")
    try:
        yield World(s3, asg, imds, bundle, tmp_path / "run", moto_server)
    finally:
        imds.close()
