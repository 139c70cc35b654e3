"""The FIS verbs `spotrain smoke` uses to send one real spot interruption, on moto: the template
names exactly the run's instance, its notice is FIS's own bounds, and nothing of it is left after."""

from __future__ import annotations

import boto3
import pytest

from spotrain.cloud.aws import fis
from spotrain.errors import SpotrainError

R = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/spotrain/spotrain-fis"


def test_the_template_interrupts_only_the_named_instance_with_a_two_minute_notice() -> None:
    arn = "arn:aws:ec2:us-east-1:123456789012:instance/i-0abc"
    req = fis.template_request(arn=arn, role_arn=ROLE, run_id="r1")
    (target,) = req["targets"].values()
    assert target == {"resourceType": "aws:ec2:spot-instance", "resourceArns": [arn], "selectionMode": "ALL"}
    (action,) = req["actions"].values()
    assert action["actionId"] == "aws:ec2:send-spot-instance-interruptions"
    assert action["parameters"] == {"durationBeforeInterruption": "PT2M"}
    assert list(action["targets"].values()) == list(req["targets"])  # the action points at that target
    assert req["roleArn"] == ROLE and req["tags"]["spotrain:run"] == "r1"


@pytest.mark.parametrize("minutes", [0, 1, 16])
def test_a_notice_outside_fis_bounds_is_refused_before_any_call(minutes: int) -> None:
    with pytest.raises(SpotrainError, match=f"{minutes} minutes: FIS takes 2 to 15"):
        fis.template_request(arn="arn", role_arn=ROLE, run_id="r1", notice_minutes=minutes)


def test_send_then_remove_leaves_no_template(aws: boto3.Session) -> None:
    sent = fis.send_interruption(aws, region=R, instance_id="i-0abc", role_arn=ROLE, run_id="r1")
    assert fis.leftover_templates(aws, region=R) == [sent.template_id]
    assert fis.leftover_templates(aws, region=R, run_id="other") == []
    status, _ = fis.experiment_status(aws, sent)
    assert status in ("pending", "initiating", "running", "completed")
    fis.remove(aws, sent)
    assert fis.leftover_templates(aws, region=R) == []
    fis.remove(aws, sent)  # twice is fine: gone is what remove wants
