"""The gp3 volume that holds a run's data, provisioned for the recipe's read rate: the one answer to
"how much Throughput and Iops", asked by the plan (which shows its $/h and stores it) and followed by
every attempt's launch.

A gp3 volume created with no Iops/Throughput gets the baseline, 3,000 IOPS and 125 MiB/s: at ~110 KB a
JPEG that feeds ~1,100 images/s, far below what 8 V100s eat. gp3 allows 125..1,000 MiB/s and
3,000..16,000 IOPS, with at most 0.25 MiB/s of throughput per provisioned IOPS (Amazon EBS User Guide,
"General Purpose SSD volumes", gp3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

BASE_IOPS, MAX_IOPS = 3000, 16000
BASE_MIB_S, MAX_MIB_S = 125, 1000
MIB_S_PER_IOPS = 0.25  # gp3: throughput <= 0.25 MiB/s per provisioned IOPS
# Amazon EBS pricing, us-east-1, gp3: storage, and what is provisioned over the baseline, per month;
# the pricing page prorates a month as 730 hours.
HOURS_PER_MONTH = 730
USD_PER_GB_MONTH = 0.08
USD_PER_IOPS_MONTH = 0.005  # each IOPS over 3,000
USD_PER_MIB_S_MONTH = 0.04  # each MiB/s over 125


@dataclass(frozen=True)
class VolumePlan:
    gb: int
    iops: int
    mib_s: int  # gp3 Throughput
    need_mib_s: float  # what the recipe reads at the planned images/s (0: it keeps its data in memory)

    @property
    def provisioned(self) -> bool:
        """More than the baseline: the launch passes Iops and Throughput."""
        return self.iops > BASE_IOPS or self.mib_s > BASE_MIB_S

    @property
    def usd_per_hour(self) -> float:
        return volume_usd_per_hour(self.gb, self.iops, self.mib_s)

    @property
    def extra_usd_per_hour(self) -> float:
        """What the provisioning adds to the storage's price."""
        return self.usd_per_hour - volume_usd_per_hour(self.gb, BASE_IOPS, BASE_MIB_S)


def volume_usd_per_hour(gb: float, iops: int, mib_s: int) -> float:
    month = (
        gb * USD_PER_GB_MONTH
        + max(iops - BASE_IOPS, 0) * USD_PER_IOPS_MONTH
        + max(mib_s - BASE_MIB_S, 0) * USD_PER_MIB_S_MONTH
    )
    return month / HOURS_PER_MONTH


def size_volume(*, gb: int, images_per_s: float, bytes_per_sample: int) -> VolumePlan:
    """Throughput for `images_per_s` samples of `bytes_per_sample` each, and one IOPS per sample (a
    JPEG under 256 KiB is one I/O: EBS counts SSD I/O in units of up to 256 KiB), within gp3's bounds;
    the IOPS also cover the throughput (0.25 MiB/s per IOPS)."""
    need = images_per_s * bytes_per_sample / 2**20
    mib_s = min(max(math.ceil(need), BASE_MIB_S), MAX_MIB_S)
    want = max(math.ceil(images_per_s) if bytes_per_sample else 0, math.ceil(mib_s / MIB_S_PER_IOPS))
    iops = min(max(want, BASE_IOPS), MAX_IOPS)
    return VolumePlan(gb=gb, iops=iops, mib_s=mib_s, need_mib_s=need)
