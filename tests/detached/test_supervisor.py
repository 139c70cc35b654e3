"""The supervisor as the instance runs it (a subprocess from a bundle of onboard/ only, on a moto server,
with a stub trainer): the ledger it writes, how each exit ends the attempt and the run, and the guards
it enforces at boot from the ledger (--max-attempts, --budget, the failure loop)."""

from __future__ import annotations

from .conftest import PRICES, R, World


def test_a_finished_trainer_ends_the_run_succeeded_with_desired_zero(world: World) -> None:
    world.write_settings("done")
    first = world.member()
    out = world.boot()
    assert out.returncode == 0, out.stderr
    ledger = world.ledger()
    (rec,) = ledger.attempts
    assert (rec.attempt, rec.instance_id, rec.zone, rec.exit_code) == (1, first, f"{R}a", 0)
    assert rec.usd_per_hour == world.price_in_force(f"{R}a") != PRICES[f"{R}a"]  # EC2's, not the quote
    assert rec.checkpointed and rec.end is not None
    assert rec.end >= rec.heartbeat - 1e-6 >= rec.start
    assert ledger.end is not None and ledger.end.state == "SUCCEEDED"
    assert world.desired() == 0
    assert "stub trainer done" in (world.run_dir / "train.log").read_text()


def test_an_interrupted_attempt_waits_then_leaves_the_group_which_starts_the_next(world: World) -> None:
    world.write_settings("interrupted")
    first = world.member()
    assert world.boot().returncode == 75
    assert world.desired() == 1 and world.member() != first  # the group's replacement
    world.write_settings("done")
    assert world.boot().returncode == 0
    ledger = world.ledger()
    assert [(a.attempt, a.exit_code, a.reason) for a in ledger.attempts] == [
        (1, 75, "interrupted"),
        (2, 0, "finished"),
    ]
    assert ledger.attempts[0].instance_id == first and ledger.end is not None and world.desired() == 0
    assert ledger.attempts[0].rebalance_at is not None and ledger.attempts[1].rebalance_at is None


def test_three_failures_at_start_end_the_run_failed_with_the_reason(world: World) -> None:
    world.write_settings("fail-at-start", failure_loop=3)
    members = []
    for _ in range(3):
        members.append(world.member())
        assert world.boot().returncode == 1
    assert len(set(members)) == 3  # the first two left the group, which replaced each
    ledger = world.ledger()
    assert [a.exit_code for a in ledger.attempts] == [1, 1, 1]
    assert all(not a.checkpointed for a in ledger.attempts)
    assert ledger.end is not None and ledger.end.state == "FAILED"
    assert ledger.end.reason.startswith(
        "failure loop: the last 3 attempts failed before their first checkpoint"
    )
    assert "no kernel image" in ledger.end.reason
    assert world.desired() == 0


def test_a_failure_after_a_checkpoint_ends_the_run_at_once(world: World) -> None:
    world.write_settings("fail-late")
    assert world.boot().returncode == 1
    ledger = world.ledger()
    assert ledger.end is not None and ledger.end.reason == "attempt 1: the trainer exited 1"
    assert world.desired() == 0


def test_max_attempts_is_enforced_at_boot_from_the_ledger(world: World) -> None:
    world.write_settings("interrupted", max_attempts=1)
    assert world.boot().returncode == 75
    assert world.boot().returncode == 0  # the replacement refuses to start a second attempt
    ledger = world.ledger()
    assert len(ledger.attempts) == 1
    assert ledger.end is not None and ledger.end.state == "FAILED"
    assert ledger.end.reason == "--max-attempts: 1 attempt made of at most 1"
    assert world.desired() == 0


def test_the_budget_is_enforced_at_boot_with_the_next_attempts_billed_minimum(world: World) -> None:
    # One attempt of at least 60 s at $0.30/h costs $0.005 (EC2 reclaimed it in its first hour: its spot
    # is free, its volumes are not); the next one's billed minute at 0.30 + 0.10 adds $0.00667.
    world.write_settings("interrupted", budget_usd=0.008, extra_usd_per_hour=0.10)
    assert world.boot().returncode == 75
    assert world.boot().returncode == 0
    ledger = world.ledger()
    assert len(ledger.attempts) == 1 and ledger.end is not None
    assert ledger.end.reason.startswith("--budget: spent $0.0017 + projected $0.0067 would pass the budget")
    assert world.desired() == 0


def test_a_run_ended_meanwhile_starts_no_attempt(world: World) -> None:
    world.write_settings("done")
    assert world.boot().returncode == 0
    world.asg.set_desired_capacity(AutoScalingGroupName="spotrain-r-det", DesiredCapacity=1)  # by hand
    assert world.boot().returncode == 0
    assert len(world.ledger().attempts) == 1 and world.desired() == 0


def test_a_trainer_that_cannot_even_start_counts_as_a_failure_at_start(world: World, tmp_path) -> None:
    world.write_settings("done", failure_loop=2)
    missing = str(tmp_path / "no-such-python")
    assert world.boot(python=missing).returncode == -1 % 256
    assert world.desired() == 1 and world.ledger().end is None  # the group replaced it
    assert world.boot(python=missing).returncode == -1 % 256
    ledger = world.ledger()
    assert [a.exit_code for a in ledger.attempts] == [-1, -1]
    assert "supervisor: FileNotFoundError" in ledger.attempts[0].reason
    assert ledger.end is not None and ledger.end.reason.startswith("failure loop: the last 2 attempts")
    assert world.desired() == 0
