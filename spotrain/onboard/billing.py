"""The rules of a billed second that the laptop (spotrain/cost.py) and the instance's supervisor (the
budget at boot) share: one owner for them, stdlib only.

Linux spot and on-demand instances are billed per second with a one-minute minimum ("Amazon EC2
billing and purchasing options", EC2 User Guide); EC2 interrupting a spot instance in its first hour
charges nothing for it ("Billing for interrupted Spot Instances").
"""

from __future__ import annotations

import math

MIN_BILLED_S = 60
FREE_HOUR_S = 3600.0


def billed_seconds(start: float, end: float) -> int:
    """Whole seconds billed for a life from `start` to `end`: rounded up, at least 60."""
    if end < start:
        raise ValueError(f"attempt ends ({end}) before it starts ({start})")
    return max(MIN_BILLED_S, math.ceil(end - start))


def first_hour_free(*, reclaimed_by_ec2: bool, start: float, end: float) -> bool:
    """Whether the attempt's spot seconds cost nothing: EC2 (not its owner) ended it in its first hour."""
    return reclaimed_by_ec2 and end - start < FREE_HOUR_S


def flat_spot_usd(usd_per_hour: float, *, start: float, end: float, reclaimed_by_ec2: bool) -> float:
    """The spot $ of one life at one price (the supervisor's: the price at the attempt's start)."""
    if first_hour_free(reclaimed_by_ec2=reclaimed_by_ec2, start=start, end=end):
        return 0.0
    return usd_per_hour * billed_seconds(start, end) / 3600.0
