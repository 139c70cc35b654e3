"""Remote failures at the edges (issue 13, item 4): an instance that cannot be reached, logged into or
prepared ends its attempt with the reason and is terminated; the run never stays PROVISIONING with a
billed instance, and lost contact is retried within a bound, not every poll forever."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import pytest

from spotrain import orchestrator
from spotrain.cloud import EndKind
from spotrain.errors import SpotrainError
from spotrain.remote import AuthFailed, ConnectionLost, Unreachable
from spotrain.store import RunState

MAX_CALLS = 50  # far past any bound under test: a controller that retries forever fails, not hangs


class RetriedForever(BaseException):
    """Raised past MAX_CALLS; a BaseException, so that no `except Exception` in the controller eats it."""


@pytest.fixture
def dry_run(monkeypatch: pytest.MonkeyPatch, isolated_env) -> Iterator[tuple]:
    """A dry-run controller and a fresh run of the digits recipe."""
    from spotrain.config import load_spec
    from spotrain.controller import create_run, prepare
    from spotrain.workspace import open_controller

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    with open_controller(dry_run=True, boot_delay_s=0.0) as ctl:
        spec, plan = prepare(ctl, load_spec(None, {"recipe": "digits", "dry_run": True}))
        yield ctl, create_run(ctl, spec, plan)


class Silent:
    """A transport that opens, and whose every command fails (the error the old loop retried forever)."""

    name, python, state_dir = "silent", "python3", "~/.spotrain-remote"

    def __init__(self, fail: Callable[[], None]) -> None:
        self.exec = lambda *a, **kw: fail()

    def reconnect(self) -> None: ...

    def close(self) -> None: ...


def failing_transport(
    monkeypatch, ctl, make_error: Callable[[], Exception], *, on_open: bool = True
) -> list[int]:
    """Opening the instance's transport raises make_error() (on_open), or opens one whose commands raise it."""
    calls: list[int] = []

    def fail() -> None:
        calls.append(1)
        if len(calls) > MAX_CALLS:
            raise RetriedForever(f"the instance was tried {len(calls)} times")
        raise make_error()

    def connect(target):
        return fail() if on_open else Silent(fail)

    monkeypatch.setattr(orchestrator, "connect", connect)
    return calls


def instance_state(ctl, run_id: str) -> str:
    (attempt,) = ctl.store.attempts(run_id)
    return ctl.cloud.describe(attempt.region, attempt.instance_id).state


def last_reason(ctl, run_id: str) -> str:
    """Why the run last changed state (the end reason is kept only for an ended run)."""
    return ctl.store.events(run_id, kinds=["state"])[-1].data["reason"]


def warnings(ctl, run_id: str) -> list[str]:
    return [e.data["message"] for e in ctl.store.events(run_id, kinds=["warning"])]


def test_a_rejected_key_ends_the_run_failed_and_terminates_the_instance(dry_run, monkeypatch) -> None:
    ctl, run_id = dry_run
    calls = failing_transport(monkeypatch, ctl, lambda: AuthFailed("ubuntu@203.0.113.9: key rejected"))
    outcome = ctl.orchestrator(poll_s=0.01).drive(run_id)
    assert outcome.state == RunState.FAILED and "key rejected" in outcome.reason, outcome
    (attempt,) = ctl.store.attempts(run_id)
    assert attempt.end_reason == "error" and attempt.ended_at is not None
    assert instance_state(ctl, run_id) in ("shutting-down", "terminated")
    assert len(calls) == 1 and warnings(ctl, run_id) == []  # never retried: the next try is refused too


def test_a_failed_bootstrap_ends_the_run_failed_with_its_reason(dry_run, monkeypatch) -> None:
    ctl, run_id = dry_run

    def wait_ready(
        transport, instance_id, deadline_s, **_
    ):  # what AwsCloud.wait_ready raises on the failure marker
        raise SpotrainError("the instance's bootstrap failed: nvidia-smi found no GPU", "see bootstrap.log")

    monkeypatch.setattr(ctl.cloud, "wait_ready", wait_ready)
    outcome = ctl.orchestrator(poll_s=0.01).drive(run_id)
    assert outcome.state == RunState.FAILED and "nvidia-smi found no GPU" in outcome.reason, outcome
    assert instance_state(ctl, run_id) in ("shutting-down", "terminated")


@pytest.mark.parametrize(
    "error, on_open", [(Unreachable, True), (ConnectionLost, True), (ConnectionLost, False)]
)
def test_lost_contact_is_retried_within_its_bound_then_the_run_waits(
    dry_run, monkeypatch, error, on_open
) -> None:
    ctl, run_id = dry_run
    calls = failing_transport(monkeypatch, ctl, lambda: error("203.0.113.9:22: no answer"), on_open=on_open)
    orch = ctl.orchestrator(poll_s=0.001)
    orch.lost_contact_tries, orch.lost_contact_s = 4, 0.0
    outcome = orch.drive(run_id)
    assert outcome.state == RunState.INTERRUPTED, outcome  # resumable: another instance may answer
    (attempt,) = ctl.store.attempts(run_id)
    assert attempt.end_reason == "error" and "lost contact" in last_reason(ctl, run_id)
    assert instance_state(ctl, run_id) in ("shutting-down", "terminated")
    assert len(calls) == 4 and len(warnings(ctl, run_id)) == 3, warnings(ctl, run_id)


def test_an_instance_describe_says_is_gone_ends_the_attempt_not_lost_contact(dry_run, monkeypatch) -> None:
    ctl, run_id = dry_run
    calls = failing_transport(monkeypatch, ctl, lambda: Unreachable("203.0.113.9:22: no answer"))
    real = ctl.cloud.describe

    def describe(region: str, instance_id: str):
        status = real(region, instance_id)
        if not calls:  # booting: as it was
            return status
        # what lifecycle.describe makes of InvalidInstanceID.NotFound (an instance gone for an hour)
        return dataclasses.replace(
            status, state="terminated", end=EndKind.UNKNOWN, reason_code="InvalidInstanceID.NotFound"
        )

    monkeypatch.setattr(ctl.cloud, "describe", describe)
    outcome = ctl.orchestrator(poll_s=0.01).drive(run_id)
    assert outcome.state in (RunState.FAILED, RunState.INTERRUPTED), outcome
    assert "InvalidInstanceID.NotFound" in last_reason(ctl, run_id)
    (attempt,) = ctl.store.attempts(run_id)
    assert attempt.ended_at is not None and len(calls) == 1 and warnings(ctl, run_id) == []


def test_an_attempt_that_lost_contact_keeps_its_log_from_the_s3_mirror(dry_run, monkeypatch) -> None:
    from spotrain.layout import log_path

    ctl, run_id = dry_run
    s3 = ctl.cloud.session().client("s3", region_name="us-east-1")
    text = "step 12 loss 0.5\nstep 13 loss 0.4\n"  # what the trainer mirrored before contact was lost
    s3.put_object(Bucket=ctl.cloud.bucket(), Key=f"runs/{run_id}/attempts/1/train.log", Body=text.encode())
    calls = failing_transport(monkeypatch, ctl, lambda: Unreachable("203.0.113.9:22: no answer"))
    orch = ctl.orchestrator(poll_s=0.001)
    orch.lost_contact_tries, orch.lost_contact_s = 2, 0.0
    assert orch.drive(run_id).state == RunState.INTERRUPTED
    assert len(calls) == 2  # the log came from S3: the silent instance was not asked again
    assert log_path(ctl.state_dir, run_id, 1).read_text() == text
