"""Waiting for the bootstrap (cloud/aws/ready.py) with a fake Shell: the stages it reports on the way,
the deadline that restarts at each change of stage (and is longer in a data stage), and the
orchestrator's `stage` and `data_ready` events. A fake clock: nothing sleeps."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from spotrain import contract
from spotrain.cloud.aws import ready
from spotrain.errors import SpotrainError
from spotrain.trainer_watch import TrainerWatch


@dataclass(frozen=True)
class Result:
    exit_code: int
    stdout: bytes = b""
    stderr: bytes = b""


class Boot:
    """A Shell whose bootstrap goes through `stages` (one per probe), then is ready; each probe
    advances the fake clock by `step_s`."""

    def __init__(self, stages: list[str], marker: str, step_s: float = 60.0) -> None:
        self.stages, self.marker, self.step_s, self.now, self.probes = stages, marker, step_s, 0.0, 0

    def exec(self, command: str, *, timeout: float | None = None) -> Result:
        assert contract.READY in command and contract.BOOT_STAGE in command
        self.probes += 1
        self.now += self.step_s
        if self.probes > len(self.stages):
            return Result(0, self.marker.encode())
        return Result(3, self.stages[self.probes - 1].encode() + b"\n")

    def clock(self) -> float:
        return self.now


MARKER = "SPOTRAIN_PYTHON=/opt/pytorch/bin/python\nSPOTRAIN_DATA_SOURCE=snapshot\nSPOTRAIN_DATA_INIT_S=1260\n"


def test_each_new_stage_is_reported_once_then_the_marker_is_read() -> None:
    boot = Boot(["", "data-init", "data-init", "data-init 1/8", "data-init 8/8", "ready"], MARKER)
    seen: list[str] = []
    got = ready.wait_ready(
        boot, deadline_s=900, poll_s=0, on_stage=seen.append, clock=boot.clock, sleep=lambda _: None
    )
    assert seen == ["data-init", "data-init 1/8", "data-init 8/8", "ready"]
    assert got["SPOTRAIN_DATA_INIT_S"] == "1260"


def test_a_data_stage_may_take_longer_than_the_boot_deadline_but_not_for_ever() -> None:
    # 20 minutes of `aws s3 sync` (150 GB at 125 MiB/s), one probe a minute: past 900 s, still fine
    boot = Boot(["data-s3"] * 20, MARKER)
    ready.wait_ready(boot, deadline_s=900, poll_s=0, clock=boot.clock, sleep=lambda _: None)
    stuck = Boot(["data-s3"] * 1000, MARKER)
    with pytest.raises(SpotrainError, match="in stage 'data-s3' for 3600 s"):
        ready.wait_ready(
            stuck, deadline_s=900, data_deadline_s=3600, poll_s=0, clock=stuck.clock, sleep=lambda _: None
        )


def test_the_deadline_restarts_when_the_stage_changes_and_holds_when_it_does_not() -> None:
    moving = Boot(["torch", "gpus"] * 10, MARKER, step_s=600)  # 20 probes, 200 min, each stage new
    ready.wait_ready(moving, deadline_s=900, poll_s=0, clock=moving.clock, sleep=lambda _: None)
    stuck = Boot(["torch"] * 10, MARKER, step_s=600)
    with pytest.raises(SpotrainError, match="in stage 'torch' for 900 s"):
        ready.wait_ready(stuck, deadline_s=900, poll_s=0, clock=stuck.clock, sleep=lambda _: None)


def test_a_failure_marker_ends_the_wait_with_its_reason() -> None:
    class Failed:
        def exec(self, command: str, *, timeout: float | None = None) -> Result:
            return Result(3, b"data-init\n", b"cannot read /dev/nvme1n1 ahead with dd\n")

    with pytest.raises(SpotrainError, match="bootstrap failed: cannot read /dev/nvme1n1"):
        ready.wait_ready(Failed(), deadline_s=900, poll_s=0, sleep=lambda _: None)


def test_the_orchestrator_records_the_stages_and_the_data_ready_event() -> None:
    events: list[tuple[str, dict]] = []

    class Cloud:
        def wait_ready(self, transport, instance_id, deadline_s, *, on_stage=None):
            for name in ("data-init", "data-init 8/8"):
                on_stage(name)
            return contract.parse_ready(MARKER)

    class Watch(TrainerWatch):
        cloud = Cloud()

        def _event(self, run_id, kind, **data):
            events.append((kind, data))

    @dataclass
    class Attempt:
        number: int = 2
        instance_id: str = "i-1"

    Watch()._wait_ready("r1", Attempt(), transport=None)
    assert events == [
        ("stage", {"attempt": 2, "stage": "data-init"}),
        ("stage", {"attempt": 2, "stage": "data-init 8/8"}),
        ("data_ready", {"attempt": 2, "source": "snapshot", "seconds": 1260.0}),
    ]
