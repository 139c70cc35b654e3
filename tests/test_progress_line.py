"""The launch's live view: the trainer's events worth a line."""

from __future__ import annotations

from spotrain.render import progress_line


def test_rebalance_recommendation_gets_a_line_naming_its_checkpoint() -> None:
    event = {
        "kind": "rebalance",
        "attempt": 2,
        "source": "imds",
        "notice_time": "2026-11-29T11:50:00Z",
        "step": 23,
        "checkpoint": "step-000023",
        "checkpoint_s": 0.41,
    }
    assert progress_line(event) == (
        "attempt 2: rebalance recommendation (imds, 2026-11-29T11:50:00Z): checkpoint step-000023 "
        "in 0.41 s, training goes on"
    )
