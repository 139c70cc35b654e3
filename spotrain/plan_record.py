"""`PlanRecord`: what a run's plan decided that every attempt follows, as stored with the run.

Its own module, with no imports, so that reading a run back (`store_records`, for `spotrain status`)
needs neither pydantic nor the spec's validators; `config` re-exports it beside `RunSpec`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PlanRecord:
    """The plan's decisions that every attempt follows, stored with the run (made by plan.py)."""

    instance_type: str
    gpus: int  # per instance, from the catalog
    root_gb: int  # the root volume, sized by the recipe
    checkpoint_s: float  # the trainer's --checkpoint-every, within config.CHECKPOINT_BOUNDS_S
    data_iops: int = 3000  # the data's gp3 volume (volumes.size_volume); older runs: the baseline
    data_mib_s: int = 125  # its Throughput
