"""--auto-resume waits for spot capacity (issue 13, item 10): a launch refused in every zone for
capacity is tried again after a pause that doubles, and goes on when a zone takes it; past --max-wait
the refusal stands and says how long it waited. The clock and the pauses are the test's own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from spotrain.cloud import NoCapacity, ZoneFailure
from spotrain.cloud.aws.instances import LaunchSpec, all_failed
from spotrain.store import RunState

CAPACITY = "InsufficientInstanceCapacity"


@pytest.fixture
def dry_run(monkeypatch: pytest.MonkeyPatch, isolated_env) -> Iterator:
    from spotrain.config import load_spec
    from spotrain.controller import create_run, prepare
    from spotrain.workspace import open_controller

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    with open_controller(dry_run=True, boot_delay_s=0.0) as ctl:

        def run(**spec):
            s, plan = prepare(ctl, load_spec(None, {"recipe": "digits", "dry_run": True, **spec}))
            return create_run(ctl, s, plan)

        yield ctl, run


def refuse_first(monkeypatch, ctl, n: int) -> list[int]:
    """The cloud refuses the first `n` launches as EC2 does when every zone is out of capacity."""
    real, tries = ctl.cloud.start_attempt, []

    def start_attempt(req):
        tries.append(1)
        if len(tries) <= n:
            failures = [
                ZoneFailure("us-east-1", c.zone, CAPACITY, "no capacity") for c in req.order.candidates
            ]
            raise all_failed(req.spec, failures)
        return real(req)

    monkeypatch.setattr(ctl.cloud, "start_attempt", start_attempt)
    return tries


def fake_time(orch) -> list[float]:
    """The orchestrator's clock, advanced only by its own pauses; returns the pauses taken."""
    now, pauses = [0.0], []

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        now[0] += seconds

    orch.clock, orch.sleep = (lambda: now[0]), sleep
    return pauses


def waits(ctl, run_id: str) -> list[str]:
    return [e.data["message"] for e in ctl.store.events(run_id, kinds=["waiting"])]


def test_capacity_refused_three_times_then_the_launch_goes_on(dry_run, monkeypatch) -> None:
    ctl, new_run = dry_run
    run_id = new_run(auto_resume=True, max_epochs=1)
    tries = refuse_first(monkeypatch, ctl, 3)
    orch = ctl.orchestrator(poll_s=0.05)
    pauses = fake_time(orch)
    outcome = orch.drive(run_id)
    assert outcome.state == RunState.SUCCEEDED, outcome
    assert len(tries) == 4 and len(ctl.store.attempts(run_id)) == 1
    said = waits(ctl, run_id)
    assert [m.split("trying again in ")[1].split(" s")[0] for m in said] == ["30", "60", "120"]
    assert "no spot capacity" in said[0] and "no --max-wait" in said[0]
    assert sum(pauses) == 210


def test_past_max_wait_the_refusal_stands_and_says_how_long_it_waited(dry_run, monkeypatch) -> None:
    ctl, new_run = dry_run
    run_id = new_run(auto_resume=True, max_wait="2m")
    tries = refuse_first(monkeypatch, ctl, 100)
    orch = ctl.orchestrator(poll_s=0.05)
    fake_time(orch)
    with pytest.raises(NoCapacity, match="--max-wait 120 s: waited 90 s"):
        orch.drive(run_id)
    run = ctl.store.get_run(run_id)
    assert run.state == RunState.FAILED and "--max-wait 120 s" in run.end_reason  # no attempt yet: failed
    assert len(tries) == 3 and ctl.store.attempts(run_id) == []


def test_without_auto_resume_a_capacity_refusal_ends_the_launch_at_once(dry_run, monkeypatch) -> None:
    ctl, new_run = dry_run
    run_id = new_run()
    tries = refuse_first(monkeypatch, ctl, 1)
    with pytest.raises(NoCapacity):
        ctl.orchestrator(poll_s=0.05).drive(run_id)
    assert len(tries) == 1 and waits(ctl, run_id) == []
    assert ctl.store.get_run(run_id).state == RunState.FAILED


def test_only_refusals_that_may_pass_are_waited_for() -> None:
    spec = LaunchSpec(run_id="r", attempt_id="a", owner="o", instance_type="g4dn.xlarge", root_gb=100)
    passing = [
        ZoneFailure("us-east-1", "us-east-1a", CAPACITY, ""),
        ZoneFailure("us-east-1", "*", "Quota", ""),
    ]
    assert isinstance(all_failed(spec, passing), NoCapacity)
    for code in ("NoSnapshot", "NoImage", "NoSubnet", "InvalidParameterValue"):
        final = [*passing, ZoneFailure("us-west-2", "*", code, "")]
        assert not isinstance(all_failed(spec, final), NoCapacity), code
