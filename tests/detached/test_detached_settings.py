"""The settings `launch --detach` writes for the supervisor: the attached attempt's trainer command
(less its python), the spec's limits, the plan's volume rate; and they survive the trip through JSON."""

from __future__ import annotations

import pytest

from spotrain import detached
from spotrain.config import PlanRecord, RunSpec
from spotrain.onboard.ledger import RunSettings


def test_the_settings_carry_the_trainer_command_limits_and_prices() -> None:
    spec = RunSpec(recipe="digits", budget=2.5, max_attempts=4)
    plan = PlanRecord(instance_type="g4dn.xlarge", gpus=1, root_gb=100, checkpoint_s=120.0)
    s = detached.settings_for(
        spec, plan, run_id="r9", bucket="spotrain-b", region="us-east-1", group="spotrain-r9",
        zone_prices={"us-east-1a": 0.2}, run_dir="/home/ubuntu/spotrain/runs/r9",
    )  # fmt: skip
    args = s.trainer_args
    assert args[:2] == ["-m", "trainer.train"] and "python" not in args
    assert args[args.index("--resume") + 1] == "auto"
    assert args[args.index("--mirror") + 1] == "s3://spotrain-b/runs/r9"
    assert (s.max_attempts, s.budget_usd, s.instance_type) == (4, 2.5, "g4dn.xlarge")
    assert s.extra_usd_per_hour == pytest.approx(100 * 0.08 / 720)  # the gp3 root, baseline Iops
    assert RunSettings.from_json(s.to_json()) == s
