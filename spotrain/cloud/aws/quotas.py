"""The account's spot vCPU quotas (Service Quotas), checked before any launch call.

A new account's spot quota is often 0 vCPUs; EC2 would then refuse every zone with the same error.
Checking first gives one message that names the quota and says how to raise it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import boto3

from spotrain import catalog
from spotrain.cloud import NoCapacity, Quota, ZoneFailure
from spotrain.cloud.aws import ClientError, client, error_code
from spotrain.errors import SpotrainError

SPOT_QUOTAS = {  # the quota class (first letter of the type) -> (quota name, Service Quotas code)
    "P": ("All P Spot Instance Requests", "L-7212CCBC"),
    "G": ("All G and VT Spot Instance Requests", "L-3819A6DF"),
}


def _in_use_vcpus(ec2: Any, quota_class: str) -> int:
    total = 0
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}]
    )
    for page in pages:
        for res in page["Reservations"]:
            for inst in res["Instances"]:
                itype = inst["InstanceType"]
                if inst.get("InstanceLifecycle") != "spot" or itype[0].upper() != quota_class:
                    continue
                cpu = inst.get("CpuOptions") or {}
                if cpu.get("CoreCount"):
                    total += cpu["CoreCount"] * cpu.get("ThreadsPerCore", 1)
                elif itype in catalog.INSTANCE_TYPES:
                    total += catalog.INSTANCE_TYPES[itype].vcpus
    return total


def spot_quota(sess: boto3.Session, *, region: str, instance_type: str) -> Quota:
    """The account's spot vCPU quota for the type's class in `region`, and how much of it is in use."""
    itype = catalog.instance_type(instance_type)
    name, code = SPOT_QUOTAS.get(itype.quota_class, ("", ""))
    if not code:
        return Quota(region, f"spot quota for {itype.family}", "", None)
    try:
        got = client(sess, "service-quotas", region).get_service_quota(ServiceCode="ec2", QuotaCode=code)
        value: float | None = float(got["Quota"]["Value"])
    except ClientError as err:
        if error_code(err) not in {"NoSuchResourceException", "AccessDeniedException", "AccessDenied"}:
            raise
        return Quota(region, name, code, None)  # unknown: EC2 will say if it is too low
    in_use = _in_use_vcpus(client(sess, "ec2", region), itype.quota_class)
    return Quota(region, name, code, value, in_use)


def quota_shortfall(quota: Quota, itype: catalog.InstanceType, count: int = 1) -> str | None:
    """Why `quota` cannot take `count` more `itype`s, or None when it can (or is unknown)."""
    need = itype.vcpus * count
    if quota.vcpus is None or quota.vcpus - quota.in_use_vcpus >= need:
        return None
    what = itype.name if count == 1 else f"{count} x {itype.name}"
    return (
        f"the spot vCPU quota '{quota.name}' in {quota.region} is {quota.vcpus:g} vCPUs with "
        f"{quota.in_use_vcpus} in use; {what} needs {need}"
    )


def quota_hint(quota: Quota, itype: catalog.InstanceType, count: int = 1) -> str:
    want = math.ceil(quota.in_use_vcpus + itype.vcpus * count)
    return (
        f"ask AWS for at least {want}: `aws service-quotas request-service-quota-increase --service-code ec2 "
        f"--quota-code {quota.code} --desired-value {want} --region {quota.region}` "
        "(or Service Quotas in the console); new accounts often start at 0"
    )


def gate(
    sess: boto3.Session, *, regions: Sequence[str], itype: catalog.InstanceType, count: int = 1
) -> list[ZoneFailure]:
    """Regions whose spot quota cannot take `count` more instances (a run's nodes); raises when that
    is all of them."""
    short: list[tuple[Quota, str]] = []
    for region in regions:
        quota = spot_quota(sess, region=region, instance_type=itype.name)
        why = quota_shortfall(quota, itype, count)
        if why:
            short.append((quota, why))
    if short and len(short) == len(regions):
        quota, why = short[0]
        others = "; ".join(w for _, w in short[1:])
        # A quota that could hold the instance but for vCPUs in use may free up (an instance just
        # interrupted is counted for a while: the quota updates late); one smaller than the instance
        # never will.
        lagging = all(q.vcpus is not None and q.vcpus >= itype.vcpus * count for q, _ in short)
        raise (NoCapacity if lagging else SpotrainError)(
            why + (f"; also {others}" if others else ""), quota_hint(quota, itype, count)
        )
    return [ZoneFailure(q.region, "*", "Quota", why) for q, why in short]
