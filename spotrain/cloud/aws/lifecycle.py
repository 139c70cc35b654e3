"""A launched instance's life: describe it, wait for a state, say why it ended, terminate it, and
find the live ones of a run. Plain boto3 verbs (SkyPilot's provision/aws/instance.py split), each
turning AWS errors into SpotrainError."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from typing import Any

import boto3
from botocore.exceptions import WaiterError

from spotrain.cloud import TAG_RUN, EndKind, InstanceStatus
from spotrain.cloud.aws import ClientError, client, error_code, translated
from spotrain.cloud.aws.instances import LIVE_STATES


def end_kind(state: str, reason_code: str) -> EndKind:
    """Why an instance ended, from its state and state-reason code."""
    if state in {"pending", "running"}:
        return EndKind.RUNNING
    if reason_code.startswith("Server.SpotInstance"):  # ...Termination, ...Shutdown
        return EndKind.SPOT_INTERRUPTION
    if reason_code in {
        "Client.UserInitiatedShutdown",
        "Client.InstanceInitiatedShutdown",
        "Client.UserInitiatedHibernate",
    }:
        return EndKind.USER
    if reason_code.startswith(("Server.", "Client.")):
        return EndKind.ERROR  # InternalError, VolumeLimitExceeded, InvalidSnapshot.NotFound, ...
    return EndKind.UNKNOWN


def _status(region: str, inst: dict[str, Any]) -> InstanceStatus:
    state = inst["State"]["Name"]
    reason = inst.get("StateReason") or {}
    code = reason.get("Code", "") if state not in {"pending", "running"} else ""
    return InstanceStatus(
        instance_id=inst["InstanceId"],
        region=region,
        zone=inst.get("Placement", {}).get("AvailabilityZone", ""),
        instance_type=inst["InstanceType"],
        state=state,
        end=end_kind(state, code),
        reason_code=code,
        reason_message=reason.get("Message", "") if code else "",
        public_ip=inst.get("PublicIpAddress"),
        launch_time=inst.get("LaunchTime"),
        spot=inst.get("InstanceLifecycle") == "spot",
        tags={t["Key"]: t["Value"] for t in inst.get("Tags", [])},
        key_name=inst.get("KeyName"),
        private_ip=inst.get("PrivateIpAddress"),
    )


GONE = "InvalidInstanceID.NotFound"


def gone(region: str, instance_id: str) -> InstanceStatus:
    """An instance EC2 no longer lists. Terminated instances stay visible for about an hour after
    they end ("Terminate Amazon EC2 instances", EC2 user guide), then describe_instances answers
    InvalidInstanceID.NotFound: it ended long ago, and how is no longer known."""
    return InstanceStatus(
        instance_id=instance_id,
        region=region,
        zone="",
        instance_type="",
        state="terminated",
        end=EndKind.UNKNOWN,
        reason_code=GONE,
        reason_message=(
            f"EC2 no longer lists {instance_id} in {region}: it was terminated over an hour ago "
            "(EC2 shows a terminated instance for about an hour), so how it ended is not known"
        ),
        public_ip=None,
        launch_time=None,
        spot=False,
    )


@translated("describe an instance")
def describe(sess: boto3.Session, *, region: str, instance_id: str) -> InstanceStatus:
    """How the instance is now; one gone from EC2's listing reads as terminated, with why."""
    try:
        res = client(sess, "ec2", region).describe_instances(InstanceIds=[instance_id])["Reservations"]
    except ClientError as err:
        if error_code(err) == GONE:
            return gone(region, instance_id)
        raise
    if not res or not res[0]["Instances"]:  # eventual consistency may also answer with nothing
        return gone(region, instance_id)
    return _status(region, res[0]["Instances"][0])


@translated("wait for an instance")
def wait(
    sess: boto3.Session, *, region: str, instance_id: str, until: str = "running", deadline_s: float = 600
) -> InstanceStatus:
    """Wait (boto3's waiter) until the instance is `until` ('running' or 'terminated'), or the
    deadline passes, or it ends; then say how it is."""
    ec2 = client(sess, "ec2", region)
    delay = 5 if deadline_s >= 30 else 1
    # On WaiterError the status below says what happened instead (it ended early, or is still pending).
    with contextlib.suppress(WaiterError):
        ec2.get_waiter(f"instance_{until}").wait(
            InstanceIds=[instance_id],
            WaiterConfig={"Delay": delay, "MaxAttempts": max(1, math.ceil(deadline_s / delay))},
        )
    return describe(sess, region=region, instance_id=instance_id)


@translated("terminate instances")
def terminate(sess: boto3.Session, *, region: str, instance_ids: Sequence[str]) -> None:
    """Terminate; one already terminated is left as it is (EC2 answers that call as a no-op)."""
    if not instance_ids:
        return
    ec2 = client(sess, "ec2", region)
    try:
        ec2.terminate_instances(InstanceIds=list(instance_ids))
    except ClientError as err:
        if error_code(err) == GONE:
            # EC2 forgets a terminated instance about an hour after it ends (EC2 user guide, "Terminate
            # Amazon EC2 instances": it stays visible for a short while), and a fresh dry-run's moto
            # never knew it: gone is what terminate wanted. One call names a single missing id only,
            # so the others are terminated one by one.
            return _terminate_each(ec2, instance_ids) if len(instance_ids) > 1 else None
        # moto 5.2 answers a second TerminateInstances of an instance whose launch-time interface was
        # DeleteOnTermination with this error, where EC2 succeeds: terminate only those still live.
        if error_code(err) != "InvalidNetworkInterfaceID.NotFound":
            raise
        res = ec2.describe_instances(InstanceIds=list(instance_ids))["Reservations"]
        live = [i["InstanceId"] for r in res for i in r["Instances"] if i["State"]["Name"] != "terminated"]
        if live:
            ec2.terminate_instances(InstanceIds=live)


def _terminate_each(ec2: Any, instance_ids: Sequence[str]) -> None:
    for instance_id in instance_ids:
        try:
            ec2.terminate_instances(InstanceIds=[instance_id])
        except ClientError as err:
            if error_code(err) != GONE:
                raise


def run_instances_live(ec2: Any, run_id: str | None) -> list[dict[str, Any]]:
    """Instances not yet terminated that carry `run_id`'s tag (any run's when None)."""
    flt = (
        {"Name": f"tag:{TAG_RUN}", "Values": [run_id]} if run_id else {"Name": "tag-key", "Values": [TAG_RUN]}
    )
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[flt, {"Name": "instance-state-name", "Values": LIVE_STATES}]
    )
    return [i for page in pages for r in page["Reservations"] for i in r["Instances"]]
