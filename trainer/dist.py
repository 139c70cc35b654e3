"""The process group (torchrun sets RANK, WORLD_SIZE, LOCAL_RANK), or a single process when absent.

Across nodes (WORLD_SIZE above LOCAL_WORLD_SIZE) a node taken by spot without a notice must not leave
the others waiting in a collective for PyTorch's default timeout (init_process_group's `timeout`: 10
minutes for NCCL, 30 for gloo; docs.pytorch.org/docs/stable/distributed.html#torch.distributed.
init_process_group; NCCL enforces it with TORCH_NCCL_ASYNC_ERROR_HANDLING, on by default since 2.2). The
step's collectives (DDP's all-reduce, `agree`, `gather`) then time out after COLLECTIVE_TIMEOUT_S, the
worker raises, torchrun exits non-zero and the controller ends the attempt. `barrier` waits for rank
0's slow work (a checkpoint upload within the notice's two minutes, a download at resume), so it has a
group of its own with the long default.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

COLLECTIVE_TIMEOUT_ENV = "SPOTRAIN_COLLECTIVE_TIMEOUT_S"
COLLECTIVE_TIMEOUT_S = 45.0  # under a minute, far above one step's all-reduce on any recipe here
BARRIER_TIMEOUT = timedelta(minutes=30)  # gloo's default: what `barrier` waited before


def spans_nodes() -> bool:
    """torchrun's world is larger than this node's share of it: other machines take part."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    return world > int(os.environ.get("LOCAL_WORLD_SIZE", world))


def collective_timeout() -> timedelta | None:
    """The step's collectives' timeout: short across nodes, PyTorch's default (None) on one node."""
    if not spans_nodes():
        return None
    return timedelta(seconds=float(os.environ.get(COLLECTIVE_TIMEOUT_ENV, COLLECTIVE_TIMEOUT_S)))


class Dist:
    """The process group, or a single process; `agree` is the one tiny all-reduce a step."""

    def __init__(self) -> None:
        self.enabled = "RANK" in os.environ and "WORLD_SIZE" in os.environ
        self.rank = int(os.environ.get("RANK", 0))
        self.local_rank = int(os.environ.get("LOCAL_RANK", 0))
        self.world_size = int(os.environ.get("WORLD_SIZE", 1))
        cuda = torch.cuda.is_available()
        self.device = torch.device(f"cuda:{self.local_rank}" if cuda else "cpu")
        self.control = self.waits = None
        if self.enabled:
            if cuda:
                torch.cuda.set_device(self.device)
            timeout = collective_timeout()
            extra = {} if timeout is None else {"timeout": timeout}
            dist.init_process_group(backend="nccl" if cuda else "gloo", **extra)
            # Flags go through gloo on the CPU, so agreeing never waits for the GPU's queue to drain.
            self.control = dist.new_group(backend="gloo", **extra) if cuda else dist.group.WORLD
            self.waits = self.control
            if timeout is not None:  # every rank creates every group, in the same order
                self.waits = dist.new_group(backend="gloo", timeout=BARRIER_TIMEOUT)
        self.master = self.rank == 0

    def agree(self, *flags: int) -> list[int]:
        """Every rank's flags, combined by max: what one rank saw, all ranks act on."""
        if not self.enabled:
            return list(flags)
        t = torch.tensor(flags, dtype=torch.int64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.control)
        return t.tolist()

    def gather(self, obj: Any) -> list[Any]:
        if not self.enabled:
            return [obj]
        out = [None] * self.world_size
        dist.all_gather_object(out, obj, group=self.control)
        return out

    def barrier(self) -> None:
        """All ranks here, however long rank 0's upload or download took (BARRIER_TIMEOUT)."""
        if self.enabled:
            dist.barrier(group=self.waits)

    def close(self) -> None:
        if self.enabled:
            dist.destroy_process_group()
