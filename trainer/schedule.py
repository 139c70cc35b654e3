"""The one-cycle policy (Smith 2018; fast.ai's fit_one_cycle) as a pure function of progress in [0, 1].

The learning rate rises from max_lr/div to max_lr over the first pct_start of training, then anneals
to max_lr/div/final_div; both halves follow a cosine. Momentum (SGD) or Adam's beta1 moves the other
way: 0.95 -> 0.85 while the LR rises, back to 0.95 while it anneals, because a high LR wants less
momentum to stay stable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class OneCycle:
    max_lr: float  # the peak learning rate (what the LR range test suggests)
    div: float = 25.0  # start at max_lr / div
    final_div: float = 1e4  # end at max_lr / div / final_div
    pct_start: float = 0.25  # share of training spent warming up
    moms: tuple[float, float] = (0.95, 0.85)  # momentum at the ends and at the peak
    shape: str = "cosine"  # "cosine" halves (fast.ai), or "linear" ones: a triangle (airbench)

    def __call__(self, progress: float) -> tuple[float, float]:
        """(lr, momentum) at `progress` in [0, 1] (clamped), a pure function."""
        p = min(max(progress, 0.0), 1.0)
        start, peak = self.max_lr / self.div, self.max_lr
        end = start / self.final_div
        hi_mom, lo_mom = self.moms
        ease = _cos if self.shape == "cosine" else _lin
        if p < self.pct_start:
            t = p / self.pct_start
            return ease(start, peak, t), ease(hi_mom, lo_mom, t)
        t = (p - self.pct_start) / (1.0 - self.pct_start)
        return ease(peak, end, t), ease(lo_mom, hi_mom, t)


def _cos(a: float, b: float, t: float) -> float:
    """Cosine interpolation from a (t=0) to b (t=1)."""
    return b + (a - b) * (1.0 + math.cos(math.pi * t)) / 2.0


def _lin(a: float, b: float, t: float) -> float:
    return a + (b - a) * t


def set_lr_momentum(optimizer, lr: float, momentum: float) -> None:
    """Apply (lr, momentum) to every param group: SGD's momentum or Adam's beta1."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
        if "betas" in group:
            group["betas"] = (momentum, group["betas"][1])
        elif "momentum" in group:
            group["momentum"] = momentum
