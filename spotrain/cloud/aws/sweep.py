"""Find everything a run (or every run) left behind, by its `spotrain:run` tag, and remove it.

A detached run's Auto Scaling group first (force-deleted, so that it replaces nothing the sweep
terminates) and its launch template, then instances (terminated and waited for), then open spot
requests, unattached volumes, a multi-node run's placement group, and last the security groups, which
AWS refuses to delete while an instance still uses them (DependencyViolation, the one error retried
here, until a deadline).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import boto3
from botocore.exceptions import WaiterError

from spotrain.cloud import TAG_OWNER, TAG_RUN, Leftover, SweepResult, ZoneFailure
from spotrain.cloud.aws import ClientError, autoscaling, client, error_code, error_message, translated
from spotrain.cloud.aws.instances import LIVE_STATES

GROUPS = {"auto-scaling-group", "launch-template"}
GONE = {
    "InvalidGroup.NotFound",
    "InvalidVolume.NotFound",
    "InvalidInstanceID.NotFound",
    "InvalidPlacementGroup.Unknown",
}


def _filters(run_id: str | None, owner: str | None) -> list[dict[str, Any]]:
    out = [
        {"Name": f"tag:{TAG_RUN}", "Values": [run_id]} if run_id else {"Name": "tag-key", "Values": [TAG_RUN]}
    ]
    if owner:
        out.append({"Name": f"tag:{TAG_OWNER}", "Values": [owner]})
    return out


def _run_tag(resource: dict[str, Any]) -> str:
    return next((t["Value"] for t in resource.get("Tags", []) if t["Key"] == TAG_RUN), "")


def _in_region(ec2: Any, region: str, run_id: str | None, owner: str | None) -> list[Leftover]:
    flt = _filters(run_id, owner)
    found: list[Leftover] = []
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[*flt, {"Name": "instance-state-name", "Values": LIVE_STATES}]
    )
    for page in pages:
        for res in page["Reservations"]:
            for i in res["Instances"]:
                found.append(Leftover("instance", region, i["InstanceId"], _run_tag(i), i["State"]["Name"]))
    reqs = ec2.describe_spot_instance_requests(
        Filters=[*flt, {"Name": "state", "Values": ["open", "active"]}]
    )
    for r in reqs["SpotInstanceRequests"]:
        found.append(Leftover("spot-request", region, r["SpotInstanceRequestId"], _run_tag(r), r["State"]))
    vol_filters = [*flt, {"Name": "status", "Values": ["available"]}]
    for page in ec2.get_paginator("describe_volumes").paginate(Filters=vol_filters):
        for v in page["Volumes"]:
            found.append(Leftover("volume", region, v["VolumeId"], _run_tag(v), v["State"]))
    for g in ec2.describe_placement_groups(Filters=flt)["PlacementGroups"]:  # not paginated
        found.append(Leftover("placement-group", region, g["GroupName"], _run_tag(g), g.get("State", "")))
    for page in ec2.get_paginator("describe_security_groups").paginate(Filters=flt):
        for g in page["SecurityGroups"]:
            found.append(Leftover("security-group", region, g["GroupId"], _run_tag(g)))
    return found


@translated("list what runs left behind")
def find_leftovers(
    sess: boto3.Session, *, regions: Sequence[str], run_id: str | None = None, owner: str | None = None
) -> list[Leftover]:
    """Live instances, open spot requests, unattached volumes and security groups tagged for `run_id`
    (every run when None), optionally only `owner`'s, in each of `regions`."""
    groups = autoscaling.find_groups(sess, regions=regions, run_id=run_id)
    return groups + [
        lo for region in regions for lo in _in_region(client(sess, "ec2", region), region, run_id, owner)
    ]


def _delete_groups(ec2: Any, region: str, ids: list[str], deadline: float, result: SweepResult) -> None:
    pending = list(ids)
    while pending:
        group_id = pending.pop(0)
        try:
            ec2.delete_security_group(GroupId=group_id)
            result.deleted.append(group_id)
        except ClientError as err:
            code = error_code(err)
            if code in GONE:
                continue
            if code == "DependencyViolation" and time.monotonic() < deadline:
                pending.append(group_id)  # an instance is still shutting down; try again shortly
                time.sleep(2.0)
                continue
            result.failed.append(ZoneFailure(region, group_id, code, error_message(err)))


@translated("remove what runs left behind")
def sweep(sess: boto3.Session, leftovers: Sequence[Leftover], *, deadline_s: float = 300) -> SweepResult:
    """Terminate the instances, cancel the requests, delete the volumes and security groups."""
    deadline = time.monotonic() + deadline_s
    result = SweepResult(terminated=[], deleted=[], failed=[])
    result.deleted.extend(autoscaling.delete_groups(sess, [lo for lo in leftovers if lo.kind in GROUPS]))
    for region in dict.fromkeys(lo.region for lo in leftovers):
        ec2 = client(sess, "ec2", region)
        mine = [lo for lo in leftovers if lo.region == region]

        def ids(kind: str, mine: list[Leftover] = mine) -> list[str]:
            return [lo.resource_id for lo in mine if lo.kind == kind]

        if ids("spot-request"):
            ec2.cancel_spot_instance_requests(SpotInstanceRequestIds=ids("spot-request"))
            result.deleted.extend(ids("spot-request"))
        if ids("instance"):
            ec2.terminate_instances(InstanceIds=ids("instance"))
            result.terminated.extend(ids("instance"))
            delay = 5
            attempts = max(1, int((deadline - time.monotonic()) / delay))
            try:
                ec2.get_waiter("instance_terminated").wait(
                    InstanceIds=ids("instance"), WaiterConfig={"Delay": delay, "MaxAttempts": attempts}
                )
            except WaiterError as err:
                result.failed.append(ZoneFailure(region, ",".join(ids("instance")), "Timeout", str(err)))
        for kind, operation, key in (
            ("volume", "delete_volume", "VolumeId"),
            ("placement-group", "delete_placement_group", "GroupName"),
        ):
            for resource_id in ids(kind):
                try:
                    getattr(ec2, operation)(**{key: resource_id})
                    result.deleted.append(resource_id)
                except ClientError as err:
                    if error_code(err) not in GONE:
                        failed = ZoneFailure(region, resource_id, error_code(err), error_message(err))
                        result.failed.append(failed)
        _delete_groups(ec2, region, ids("security-group"), deadline, result)
    return result
