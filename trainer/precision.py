"""Which arithmetic the GPU trains in, chosen by its compute capability, and the loss scaler that goes with it.

    bf16          compute capability 8.0 and up (A100, A10G, L4, L40S, H100, ...): bf16 tensor cores and
                  cuDNN bf16 convolutions; bf16 has fp32's exponent range, so no loss scaling
    fp16 + scaler 7.0 and 7.5 (V100, T4): tensor cores take fp16 only; small gradients underflow in fp16,
                  so the loss is scaled up and the scale adjusted (torch.amp.GradScaler)
    fp32          CPU, and GPUs older than Volta (no tensor cores: fp16 buys little there)

Not `torch.cuda.is_bf16_supported()`: since PyTorch 2.3 it counts emulation by default (its
`including_emulation=True` tries to make a bf16 tensor, which works on any CUDA GPU), so it says yes on a
V100 or a T4, where cuDNN has no bf16 convolution engine below 8.0 and every convolution takes a slow path.
This module is the one owner of the choice: the trainer and bench/gpu.py both ask it.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch

BF16_FROM = (8, 0)  # Ampere: bf16 tensor cores (NVIDIA A100 whitepaper, "Third-generation Tensor Cores")
FP16_FROM = (7, 0)  # Volta: the first tensor cores, fp16 only


@dataclass(frozen=True)
class Precision:
    name: str  # "bf16" | "fp16" | "fp32": what the `start` event reports as `amp`
    why: str  # one line for the `start` event and the log
    device_type: str = "cpu"  # "cuda" or "cpu": where autocast and the scaler act
    capability: tuple[int, int] | None = None  # the GPU's compute capability, None on a CPU

    @property
    def dtype(self) -> torch.dtype | None:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.name)

    def autocast(self) -> AbstractContextManager:
        """The one autocast context the loop and the eval enter (a no-op in fp32)."""
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def scaler(self) -> torch.amp.GradScaler:
        """A GradScaler that is on in fp16 only; off, its scale/step/update are plain pass-throughs, so
        the loop never branches on the dtype (nanoGPT's `GradScaler(enabled=fp16)`)."""
        return torch.amp.GradScaler(self.device_type, enabled=self.name == "fp16")


def choose_precision(device: torch.device) -> Precision:
    """bf16 from compute capability 8.0, fp16 with a loss scaler on 7.x, fp32 on a CPU or older GPU."""
    if device.type != "cuda" or not torch.cuda.is_available():
        return Precision("fp32", "no CUDA device: fp32 on the CPU")
    major, minor = torch.cuda.get_device_capability(device)
    cap, where = (major, minor), f"compute capability {major}.{minor}"
    if cap >= BF16_FROM:
        return Precision("bf16", f"{where} >= 8.0: bf16 tensor cores, no loss scaling", "cuda", cap)
    if cap >= FP16_FROM:
        return Precision(
            "fp16",
            f"{where} < 8.0: no bf16 tensor cores or cuDNN bf16 convolutions; fp16 with a loss scaler",
            "cuda",
            cap,
        )
    return Precision("fp32", f"{where} < 7.0: no tensor cores; fp32", "cuda", cap)


def configure_backends(device: torch.device) -> None:
    """cuDNN picks the fastest convolution algorithm per shape (a few slow first steps per image size,
    then faster ones; shapes are fixed within a phase, so the search happens once per phase), and fp32
    matmuls may use TF32 where the GPU has it (what the fp32 parts of an autocast step run in)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def load_scaler_state(scaler: torch.amp.GradScaler, state: dict[str, Any] | None) -> str | None:
    """Resume a scaler across precisions; returns what happened when it was not a plain load, else None.

    A scaler saves `{}` when it is off (bf16, fp32), and an enabled scaler's `load_state_dict({})` raises
    ("The source state dict is empty, possibly because it was saved from a disabled instance of
    GradScaler"). So: a bf16/CPU checkpoint resumed under fp16 starts from a fresh scale (it finds its
    level again within a few dozen steps: it halves on each overflow); an fp16 checkpoint resumed where
    the scaler is off ignores the saved scale (a disabled scaler's load is a no-op anyway)."""
    if not state:
        return "fresh loss scale (the checkpoint has none)" if scaler.is_enabled() else None
    if not scaler.is_enabled():
        return f"saved loss scale {state.get('scale')} ignored (no loss scaling here)"
    scaler.load_state_dict(state)
    return None


def compile_model(model: torch.nn.Module, phases: list) -> None:
    """torch.compile the model in place, before the DDP wrap, one static graph per input shape.

    Before the wrap, as PyTorch's "Where to apply torch.compile?" page advises (it "doesn't handle
    distributed wrapper modules like DDP or FSDP very well, so consider applying torch.compile to the
    inner module passed to the wrapper"). DDP's bucketed overlap survives: while DDP's forward runs,
    Dynamo splits the graph at DDP's bucket boundaries (DDPOptimizer, `torch._dynamo.config.optimize_ddp`,
    keyed on `DistributedDataParallel._get_active_ddp_module()` in torch/_dynamo/convert_frame.py).
    In place (`nn.Module.compile`), so state_dict keys carry no `_orig_mod.` prefix.
    dynamic=False: each phase's image size (and the eval's) gets its own static graph, compiled once;
    Dynamo's default would turn dynamic at the second size and run slower symbolic-shape kernels."""
    import torch._dynamo

    graphs = 4 * len(phases) + 4  # per size: train, eval, a short last eval batch; plus FixRes/TTA evals
    config = torch._dynamo.config  # the limit was called cache_size_limit before PyTorch 2.6
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    setattr(config, name, max(getattr(config, name), graphs))
    model.compile(dynamic=False)
