from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trainer.schedule import OneCycle

CYCLE = OneCycle(max_lr=0.4, div=25, final_div=1e4, pct_start=0.25)


def test_one_cycle_endpoints_and_peak() -> None:
    assert CYCLE(0.0) == pytest.approx((0.4 / 25, 0.95))
    assert CYCLE(0.25) == pytest.approx((0.4, 0.85))
    assert CYCLE(1.0) == pytest.approx((0.4 / 25 / 1e4, 0.95))
    assert CYCLE(-1.0) == CYCLE(0.0) and CYCLE(2.0) == CYCLE(1.0)


def test_lr_rises_then_anneals_and_momentum_moves_inversely() -> None:
    points = [CYCLE(i / 1000) for i in range(1001)]
    lrs, moms = [p[0] for p in points], [p[1] for p in points]
    peak = lrs.index(max(lrs))
    assert peak == 250
    assert all(a <= b for a, b in zip(lrs[:peak], lrs[1 : peak + 1], strict=True))
    assert all(a >= b for a, b in zip(lrs[peak:-1], lrs[peak + 1 :], strict=True))
    assert moms.index(min(moms)) == peak


@given(st.floats(min_value=0.0, max_value=1.0, allow_nan=False))
def test_values_stay_in_their_ranges(progress: float) -> None:
    lr, momentum = CYCLE(progress)
    assert 0.4 / 25 / 1e4 - 1e-12 <= lr <= 0.4 + 1e-12
    assert 0.85 - 1e-12 <= momentum <= 0.95 + 1e-12
    assert math.isfinite(lr)
