"""Layers that more than one recipe's network uses (a module name with `_`: not a recipe itself)."""

from __future__ import annotations

import torch
from torch import nn


class Scale(nn.Module):
    """Multiplies by a fixed factor (no parameters): logits scaled down start the untrained net less
    confident (airbench's 1/9, Page's ResNet-9 0.125)."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor
