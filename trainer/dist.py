"""The process group (torchrun sets RANK, WORLD_SIZE, LOCAL_RANK), or a single process when absent."""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist


class Dist:
    """The process group, or a single process; `agree` is the one tiny all-reduce a step."""

    def __init__(self) -> None:
        self.enabled = "RANK" in os.environ and "WORLD_SIZE" in os.environ
        self.rank = int(os.environ.get("RANK", 0))
        self.local_rank = int(os.environ.get("LOCAL_RANK", 0))
        self.world_size = int(os.environ.get("WORLD_SIZE", 1))
        cuda = torch.cuda.is_available()
        self.device = torch.device(f"cuda:{self.local_rank}" if cuda else "cpu")
        self.control = None
        if self.enabled:
            if cuda:
                torch.cuda.set_device(self.device)
            dist.init_process_group(backend="nccl" if cuda else "gloo")
            # Flags go through gloo on the CPU, so agreeing never waits for the GPU's queue to drain.
            self.control = dist.new_group(backend="gloo") if cuda else dist.group.WORLD
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
        if self.enabled:
            dist.barrier(group=self.control)

    def close(self) -> None:
        if self.enabled:
            dist.destroy_process_group()
