"""Helpers the test folders share (imported as `helpers`: pytest puts tests/ on the path).

The images the moto worlds publish, and a poll that ends as soon as what a test waits for is there.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

# The PyTorch DLAMI a current GPU type (g5) gets, and the proprietary-driver one P3's V100 needs.
PYTORCH_DLAMI = "Deep Learning OSS Nvidia Driver AMI GPU PyTorch 2.9 (Ubuntu 24.04) 20260101"
PYTORCH_SSM = (
    "/aws/service/deeplearning/ami/x86_64/oss-nvidia-driver-gpu-pytorch-2.9-ubuntu-24.04/latest/ami-id"
)
V100_DLAMI = "Deep Learning Base Proprietary Nvidia Driver AMI (Amazon Linux 2) Version 71.6"
V100_SSM = "/aws/service/deeplearning/ami/x86_64/base-proprietary-nvidia-driver-amazon-linux-2/latest/ami-id"


def wait_for(predicate: Callable[[], T], timeout_s: float = 30.0, what: str = "the condition") -> T:
    """The first truthy value of `predicate()`, polled until `timeout_s`; AssertionError naming `what`
    after that. The timeout only bounds a broken test: a passing one returns as soon as it can."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def read_events(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of an events file so far (none while it does not exist)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
