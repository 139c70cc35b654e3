"""Lookahead toward an EMA of the weights (airbench's "LookaheadState"): every few steps the EMA takes a
step toward the weights, and the weights are set to the EMA. The EMA's decay ramps from 0 (no effect)
to its final value as progress cubed, so early training runs free and the end is averaged; at the end
of the schedule the weights become the EMA. Its state is checkpointed, so a resume stays exact."""

from __future__ import annotations

import torch
from torch import nn


class Lookahead:
    def __init__(self, model: nn.Module, every: int, decay: float) -> None:
        self.every, self.decay = every, decay
        self.ema = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def step(self, model: nn.Module, step: int, progress: float) -> None:
        """After optimizer step `step` (1-based), at `progress` in [0, 1] of the schedule."""
        if step % self.every == 0:
            self._pull(model, self.decay * min(max(progress, 0.0), 1.0) ** 3)

    @torch.no_grad()
    def finish(self, model: nn.Module) -> None:
        """The end of the schedule: the weights become the EMA."""
        self._pull(model, 1.0)

    def _pull(self, model: nn.Module, decay: float) -> None:
        state = model.state_dict()
        for name, ema in self.ema.items():
            ema.lerp_(state[name], 1.0 - decay)
            state[name].copy_(ema)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.ema

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for name, value in state.items():
            self.ema[name].copy_(value)
