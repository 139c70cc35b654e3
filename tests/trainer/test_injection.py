"""The trainer's fault injection (SPOTRAIN_NOTICE_AT): a notice pinned to a step lands at that step."""

from __future__ import annotations

import pytest

from trainer.spot import SpotWatcher, injection_step


def test_injection_step_forms() -> None:
    assert injection_step("step:30", 110) == 30
    assert injection_step("50%", 110) == 55
    assert injection_step("0.1%", 110) == 1  # never step 0: the notice comes after a step
    assert injection_step("", 110) is None
    for bad in ("step:0", "step:x", "30", "100%", "0%", "abc%"):
        with pytest.raises(ValueError, match="SPOTRAIN_NOTICE_AT"):
            injection_step(bad, 110)


def test_armed_watcher_raises_the_notice_at_its_step_only() -> None:
    watcher = SpotWatcher(base_url="off")
    assert watcher.arm(110, at="step:3") == 3
    watcher.check_step(2)
    assert watcher.notice is None
    watcher.check_step(3)
    assert watcher.notice is not None and watcher.notice.source == "injected"
    assert watcher.notice.action == "terminate" and watcher.notice.notice_time.endswith("Z")


def test_unarmed_watcher_never_raises() -> None:
    watcher = SpotWatcher(base_url="off")
    watcher.arm(110, at="")
    for step in range(200):
        watcher.check_step(step)
    assert watcher.notice is None


def test_armed_rebalance_is_raised_at_its_step_without_a_notice() -> None:
    watcher = SpotWatcher(base_url="off")
    watcher.arm(110, at="", rebalance_at="step:4")
    watcher.check_step(3)
    assert watcher.rebalance is None
    watcher.check_step(4)
    assert watcher.rebalance is not None and watcher.rebalance.source == "injected"
    assert watcher.notice is None  # a recommendation is not an interruption
    with pytest.raises(ValueError, match="SPOTRAIN_REBALANCE_AT"):
        watcher.arm(110, at="", rebalance_at="step:0")
