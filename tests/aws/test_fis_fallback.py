"""Where FIS is refused, `spotrain smoke` falls back to SIGTERM of the trainer and says why; where it
is allowed, the interruption is FIS's (on moto, which has FIS; AccessDenied from botocore's Stubber)."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from spotrain.cloud.aws import fis
from spotrain.cloud.aws.cloud import AwsCloud

R = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/spotrain/spotrain-fis"


def _denied_fis(monkeypatch: pytest.MonkeyPatch, aws: boto3.Session, operation: str) -> None:
    """FIS clients whose `operation` answers AccessDeniedException, as for an identity without fis:*."""
    real = fis.client

    def client(sess, service, region, **kw):
        made = real(sess, service, region, **kw)
        if service == "fis":
            stub = Stubber(made)
            if operation == "start_experiment":
                stub.add_response("create_experiment_template", {"experimentTemplate": {"id": "EXT1"}})
            stub.add_client_error(
                operation, "AccessDeniedException", "not authorized to perform: fis:" + operation
            )
            stub.add_response("delete_experiment_template", {"experimentTemplate": {"id": "EXT1"}})
            stub.activate()
        return made

    monkeypatch.setattr(fis, "client", client)


@pytest.mark.parametrize("operation", ["create_experiment_template", "start_experiment"])
def test_access_denied_chooses_sigterm_and_says_why(aws, monkeypatch, operation) -> None:
    _denied_fis(monkeypatch, aws, operation)
    sent = fis.interrupt_or_fallback(aws, region=R, instance_id="i-0abc", role_arn=ROLE, run_id="r1")
    assert sent.method == "sigterm" and sent.interruption is None
    assert sent.why.startswith("FIS refused: AccessDeniedException"), sent.why


def test_a_stack_without_the_fis_role_chooses_sigterm_and_names_init(aws) -> None:
    sent = fis.interrupt_or_fallback(aws, region=R, instance_id="i-0abc", role_arn=None, run_id="r1")
    assert sent.method == "sigterm" and "spotrain init" in sent.why


def test_allowed_fis_sends_the_interruption_by_fis(aws) -> None:
    sent = fis.interrupt_or_fallback(aws, region=R, instance_id="i-0abc", role_arn=ROLE, run_id="r1")
    assert sent.method == "fis" and sent.interruption is not None
    assert fis.leftover_templates(aws, region=R, run_id="r1") == [sent.interruption.template_id]
    fis.remove(aws, sent.interruption)


def test_aws_cloud_without_spotrains_stack_falls_back_to_sigterm(aws, tmp_path) -> None:
    cloud = AwsCloud(regions=[R], state_dir=tmp_path)
    cloud._session = aws
    sent = cloud.send_interruption(R, "i-0abc", "r1")
    assert sent.method == "sigterm" and "no FIS role" in sent.why
    assert fis.leftover_templates(aws, region=R) == []
