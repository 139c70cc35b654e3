"""An attempt that EC2 interrupts in its first hour is free (issue 13, item 8): the controller leaves
the instance for EC2 to reclaim instead of terminating it itself (which AWS would bill by the second),
and `cost` charges it no spot $. With --terminate-on-notice the controller ends it at once, billed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from spotrain.cloud import EndKind
from spotrain.cost import run_bill
from spotrain.store import RunState


@pytest.fixture
def interrupted(monkeypatch: pytest.MonkeyPatch, isolated_env) -> Iterator:
    """A dry-run of digits interrupted at step 30 and resumed; every terminate call recorded."""
    from spotrain.config import load_spec
    from spotrain.controller import create_run, prepare
    from spotrain.workspace import open_controller

    monkeypatch.setenv("OMP_NUM_THREADS", "1")

    def run(**extra):
        with open_controller(dry_run=True, boot_delay_s=0.0) as ctl:
            flags = {
                "recipe": "digits",
                "dry_run": True,
                "auto_resume": True,
                "inject_interruptions": ["step:30"],
            }
            spec, plan = prepare(ctl, load_spec(None, {**flags, **extra}))
            run_id = create_run(ctl, spec, plan)
            terminated: list[str] = []
            real = ctl.cloud.terminate
            monkeypatch.setattr(
                ctl.cloud, "terminate", lambda region, ids: (terminated.extend(ids), real(region, ids))[1]
            )
            outcome = ctl.orchestrator(poll_s=0.05).drive(run_id)
            assert outcome.state == RunState.SUCCEEDED, outcome
            first = ctl.store.attempts(run_id)[0]
            status = ctl.cloud.describe(first.region, first.instance_id)
            reclaims = [(e.attempt, e.data["by"]) for e in ctl.store.events(run_id, kinds=["reclaim"])]
            yield first, status, terminated, reclaims, run_bill(ctl.store, run_id)

    yield run


def test_ec2_reclaims_an_instance_interrupted_in_its_first_hour_and_it_costs_no_spot(interrupted) -> None:
    first, status, terminated, reclaims, bill = next(interrupted())
    assert first.end_reason == "spot-interruption"
    assert first.instance_id not in terminated  # spotrain never terminated it: EC2 did
    assert status.end == EndKind.SPOT_INTERRUPTION and status.reason_code == "Server.SpotInstanceTermination"
    assert reclaims == [(1, "ec2")]
    one, two = bill.cost.attempts
    assert one.free_hour and one.spot_usd == 0.0 and one.ebs_usd > 0  # the volume is still billed
    assert not two.free_hour and two.spot_usd > 0  # the attempt that finished is billed as ever


def test_terminate_on_notice_ends_it_at_once_and_it_is_billed(interrupted) -> None:
    first, status, terminated, reclaims, bill = next(interrupted(terminate_on_notice=True))
    assert first.instance_id in terminated and reclaims == [(1, "spotrain")]
    one, _ = bill.cost.attempts
    assert not one.free_hour and one.spot_usd > 0
