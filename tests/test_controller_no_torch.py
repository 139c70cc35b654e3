"""The controller runs on a laptop without torch: every spotrain module must import with torch hidden."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

HIDE_TORCH_AND_IMPORT_ALL = r"""
import importlib, importlib.abc, pkgutil, sys

class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"torch", "torchvision"}:
            raise ImportError(f"{name} is hidden for this test")
        return None

sys.meta_path.insert(0, NoTorch())
import spotrain
names = [m.name for m in pkgutil.walk_packages(spotrain.__path__, "spotrain.")]
for name in names:
    importlib.import_module(name)
assert not any(m.split(".")[0] == "torch" for m in sys.modules)
print(len(names) + 1)
"""


def test_controller_imports_without_torch() -> None:
    out = subprocess.run(
        [sys.executable, "-c", HIDE_TORCH_AND_IMPORT_ALL], cwd=REPO, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) >= 3  # spotrain, errors, cli at least


def test_torchvision_ops_load_with_this_torch() -> None:
    """A torch/torchvision pair that cannot load together fails here, loudly, not deep in a recipe."""
    import torch
    import torchvision

    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    keep = torchvision.ops.nms(boxes, torch.tensor([0.9, 0.8, 0.7]), iou_threshold=0.5)
    assert keep.tolist() == [0, 2]
