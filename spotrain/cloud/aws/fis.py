"""A real spot interruption, on request: AWS Fault Injection Service's
`aws:ec2:send-spot-instance-interruptions` posts the IMDS notice on the instance, then EC2 reclaims it,
as a capacity interruption would. `spotrain smoke` uses it to check the notice checkpoint, the resume
and the cost against AWS itself.

From the FIS actions reference ("aws:ec2:send-spot-instance-interruptions"): the target's resource
type is `aws:ec2:spot-instance`; `durationBeforeInterruption` is ISO 8601, 2 to 15 minutes (the notice
comes that long before the interruption; 2 minutes is what a real interruption gives). The experiment
runs as a role that FIS assumes (`fis.amazonaws.com`) with ec2:SendSpotInstanceInterruptions on the
instance: the stack's FisRole (infra/spotrain.yaml), passed by the controller (iam:PassRole).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.exceptions import ClientError, EndpointConnectionError

from spotrain.cloud import TAG_OWNER, TAG_RUN
from spotrain.cloud.aws import DENIED_CODES, client, error_code, translated
from spotrain.errors import SpotrainError

ACTION = "aws:ec2:send-spot-instance-interruptions"
MIN_NOTICE_MIN, MAX_NOTICE_MIN = 2, 15
ENDED = {"completed", "stopped", "failed", "cancelled"}
GONE = {"ResourceNotFoundException", "ValidationException"}
NOT_OFFERED = {"UnsupportedOperation", "InvalidAction", "OptInRequired", "SubscriptionRequiredException"}


@dataclass(frozen=True)
class Interruption:
    """An experiment sent to one instance, and the template it was made from (removed afterwards)."""

    region: str
    instance_id: str
    template_id: str
    experiment_id: str


def instance_arn(sess: boto3.Session, region: str, instance_id: str) -> str:
    account = client(sess, "sts", region).get_caller_identity()["Account"]
    return f"arn:aws:ec2:{region}:{account}:instance/{instance_id}"


def template_request(*, arn: str, role_arn: str, run_id: str, notice_minutes: int = 2) -> dict[str, Any]:
    """The CreateExperimentTemplate request that interrupts exactly one spot instance, named by ARN."""
    if not MIN_NOTICE_MIN <= notice_minutes <= MAX_NOTICE_MIN:
        raise SpotrainError(
            f"a spot interruption notice of {notice_minutes} minutes: FIS takes 2 to 15",
            "give the notice in whole minutes from 2 to 15 (a real interruption gives 2)",
        )
    return {
        "clientToken": str(uuid.uuid4()),
        "description": f"spotrain smoke: interrupt the spot instance of run {run_id}",
        "targets": {
            "SpotInstance": {
                "resourceType": "aws:ec2:spot-instance",
                "resourceArns": [arn],
                "selectionMode": "ALL",
            }
        },
        "actions": {
            "interrupt": {
                "actionId": ACTION,
                "parameters": {"durationBeforeInterruption": f"PT{notice_minutes}M"},
                "targets": {"SpotInstances": "SpotInstance"},
            }
        },
        "stopConditions": [{"source": "none"}],
        "roleArn": role_arn,
        "tags": {TAG_RUN: run_id, TAG_OWNER: "spotrain-smoke"},
    }


@dataclass(frozen=True)
class Sent:
    """How one interruption was sent: "fis" (a real notice, then EC2's reclaim) or "sigterm" (FIS was
    refused: the caller stops the trainer with SIGTERM, which it reads as a notice), and why."""

    method: str
    why: str
    interruption: Interruption | None = None  # the FIS experiment, removed with `remove`


def interrupt_or_fallback(
    sess: boto3.Session, *, region: str, instance_id: str, role_arn: str | None, run_id: str
) -> Sent:
    """FIS's interruption when it is allowed; else say that SIGTERM stands in, and why: a stack from
    before the FIS role, an identity that may not use FIS (AccessDenied), a region without FIS."""
    if not role_arn:
        return Sent("sigterm", "spotrain's stack has no FIS role (run `spotrain init` again to add it)")
    try:
        sent = send_interruption(
            sess, region=region, instance_id=instance_id, role_arn=role_arn, run_id=run_id
        )
    except SpotrainError as err:
        cause = err.__cause__
        if isinstance(cause, ClientError) and error_code(cause) in DENIED_CODES:
            return Sent("sigterm", f"FIS refused: {error_code(cause)} ({err.message[:200]})")
        if isinstance(cause, EndpointConnectionError):
            return Sent("sigterm", f"FIS is not offered in {region} ({cause})")
        raise
    except ClientError as err:
        if error_code(err) in NOT_OFFERED:
            return Sent("sigterm", f"FIS is not offered in {region} ({error_code(err)})")
        raise
    return Sent("fis", "sent by AWS Fault Injection Service", sent)


@translated("send a spot interruption with AWS Fault Injection Service")
def send_interruption(
    sess: boto3.Session, *, region: str, instance_id: str, role_arn: str, run_id: str, notice_minutes: int = 2
) -> Interruption:
    """Create the one-instance template and start it. The template is removed by `remove`, also when
    the start is refused (FIS is not offered in every region: its error names the region)."""
    fis = client(sess, "fis", region)
    request = template_request(
        arn=instance_arn(sess, region, instance_id),
        role_arn=role_arn,
        run_id=run_id,
        notice_minutes=notice_minutes,
    )
    template_id = fis.create_experiment_template(**request)["experimentTemplate"]["id"]
    try:
        started = fis.start_experiment(
            clientToken=str(uuid.uuid4()), experimentTemplateId=template_id, tags={TAG_RUN: run_id}
        )
    except Exception:
        _delete_template(fis, template_id)
        raise
    return Interruption(region, instance_id, template_id, started["experiment"]["id"])


@translated("ask FIS how the interruption goes")
def experiment_status(sess: boto3.Session, interruption: Interruption) -> tuple[str, str]:
    """The experiment's state (pending, initiating, running, completed, stopping, stopped, failed) and
    FIS's reason, which says why a failed one failed (for example, the role may not interrupt)."""
    state = client(sess, "fis", interruption.region).get_experiment(id=interruption.experiment_id)
    status = state["experiment"]["state"]
    return status["status"], status.get("reason", "")


@translated("remove the FIS experiment template")
def remove(sess: boto3.Session, interruption: Interruption) -> None:
    """Stop the experiment if it still runs, then delete its template; either gone already is done."""
    fis = client(sess, "fis", interruption.region)
    status, _ = experiment_status(sess, interruption)
    if status not in ENDED:
        try:
            fis.stop_experiment(id=interruption.experiment_id)
        except fis.exceptions.ClientError as err:
            if error_code(err) not in GONE:
                raise
    _delete_template(fis, interruption.template_id)


@translated("list spotrain's FIS experiment templates")
def leftover_templates(sess: boto3.Session, *, region: str, run_id: str | None = None) -> list[str]:
    """Templates spotrain made (tagged with a run; that run's only when given), for the sweep."""
    fis, found, token = client(sess, "fis", region), [], None
    while True:
        page = fis.list_experiment_templates(**({"nextToken": token} if token else {}))
        for template in page.get("experimentTemplates", []):
            tags = template.get("tags") or {}
            if TAG_RUN in tags and (run_id is None or tags[TAG_RUN] == run_id):
                found.append(template["id"])
        token = page.get("nextToken")
        if not token:
            return found


def _delete_template(fis: Any, template_id: str) -> None:
    try:
        fis.delete_experiment_template(id=template_id)
    except fis.exceptions.ClientError as err:
        if error_code(err) not in GONE:
            raise
