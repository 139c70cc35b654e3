"""Precision by compute capability (the CUDA answers faked), and resuming across precisions with real
torch objects on the CPU: a checkpoint without scaler state resumes under fp16, and the reverse."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainer.checkpoint import Checkpointer, Progress, load_latest, rng_state
from trainer.events import EventLog
from trainer.precision import Precision, choose_precision, load_scaler_state
from trainer.resume import restore_state


@pytest.fixture
def fake_gpu(monkeypatch):
    """Make torch believe a CUDA GPU of the given compute capability is here."""

    def install(capability: tuple[int, int]) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
        # What PyTorch 2.3+ answers on a V100 (it counts emulation): the choice must not ask it.
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)

    return install


@pytest.mark.parametrize(
    ("capability", "name", "scaled"),
    [((7, 0), "fp16", True), ((7, 5), "fp16", True), ((8, 0), "bf16", False), ((9, 0), "bf16", False)],
)
def test_precision_follows_compute_capability(fake_gpu, capability, name, scaled) -> None:
    fake_gpu(capability)
    chosen = choose_precision(torch.device("cuda:0"))
    assert chosen.name == name and chosen.device_type == "cuda" and chosen.capability == capability
    assert chosen.dtype == {"fp16": torch.float16, "bf16": torch.bfloat16}[name]
    assert f"{capability[0]}.{capability[1]}" in chosen.why  # the start event says why
    assert chosen.scaler().is_enabled() is scaled


def test_cpu_trains_in_fp32_without_a_scaler() -> None:
    chosen = choose_precision(torch.device("cpu"))
    assert chosen.name == "fp32" and chosen.dtype is None and "CPU" in chosen.why
    assert not chosen.scaler().is_enabled()
    with chosen.autocast():  # a no-op context
        assert torch.ones(2).dtype == torch.float32


def trained(
    precision: Precision, seed: int = 0
) -> tuple[nn.Module, torch.optim.Optimizer, torch.amp.GradScaler]:
    """A tiny model after two real (scaled, where the scaler is on) steps on the CPU."""
    torch.manual_seed(seed)
    model = nn.Linear(4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scaler = precision.scaler()
    for _ in range(2):
        loss = model(torch.randn(8, 4)).square().mean()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
    return model, optimizer, scaler


def save_and_load(tmp_path, precision: Precision) -> dict:
    """A checkpoint written and read back by the trainer's own Checkpointer and loader."""
    model, optimizer, scaler = trained(precision)
    events = EventLog(None)
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "progress": {"step": 2, "epoch": 0, "batch": 2, "images_seen": 16, "best": 0.0},
        "world_size": 1,
        "precision": precision.name,
    }
    Checkpointer(tmp_path / "ckpt", events).save(
        2, {"state.pt": state, "rng.pt": {"ranks": [rng_state()]}}, True
    )
    return load_latest(tmp_path / "ckpt", events)[1]


FP16_ON_CPU = Precision("fp16", "test: an enabled scaler, on the CPU", "cpu")
BF16 = Precision("bf16", "test: no scaler", "cpu")
FP32 = choose_precision(torch.device("cpu"))


@pytest.mark.parametrize("saved_under", [BF16, FP32])
def test_checkpoint_without_scaler_state_resumes_under_fp16(tmp_path, saved_under) -> None:
    files = save_and_load(tmp_path, saved_under)
    assert files["state.pt"]["scaler"] == {}  # a disabled scaler saves nothing
    model, optimizer, scaler = trained(FP16_ON_CPU, seed=1)
    with pytest.raises(RuntimeError, match="empty"):  # why the trainer cannot just call load_state_dict
        scaler.load_state_dict({})
    progress = Progress()
    restore_state(files, model, optimizer, scaler, progress, rank=0)
    assert progress.step == 2 and scaler.is_enabled()
    assert scaler.get_scale() == torch.amp.GradScaler("cpu").get_scale()  # a fresh scale
    assert torch.equal(model.weight, files["state.pt"]["model"]["weight"])
    assert load_scaler_state(trained(FP16_ON_CPU)[2], {}) == "fresh loss scale (the checkpoint has none)"


@pytest.mark.parametrize("resumed_under", [BF16, FP32])
def test_fp16_checkpoint_resumes_where_the_scaler_is_off(tmp_path, resumed_under) -> None:
    files = save_and_load(tmp_path, FP16_ON_CPU)
    saved_scale = files["state.pt"]["scaler"]["scale"]
    assert saved_scale > 0  # an enabled scaler's real state
    model, optimizer, scaler = trained(resumed_under, seed=1)
    progress = Progress()
    restore_state(files, model, optimizer, scaler, progress, rank=0)
    assert progress.step == 2 and not scaler.is_enabled()
    assert torch.equal(model.weight, files["state.pt"]["model"]["weight"])
    assert "ignored" in load_scaler_state(scaler, files["state.pt"]["scaler"])


def test_fp16_checkpoint_resumes_under_fp16_with_its_scale(tmp_path) -> None:
    files = save_and_load(tmp_path, FP16_ON_CPU)
    model, optimizer, scaler = trained(FP16_ON_CPU, seed=1)
    scaler.update(new_scale=123.0)
    restore_state(files, model, optimizer, scaler, Progress(), rank=0)
    assert scaler.get_scale() == files["state.pt"]["scaler"]["scale"]


def test_compile_is_in_place_so_checkpoints_keep_their_keys() -> None:
    """`--compile` compiles the module itself (before any DDP wrap): state_dict keys carry no
    `_orig_mod.` prefix, so a compiled run's checkpoint loads into an uncompiled model and back."""
    from trainer.precision import compile_model

    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    keys = list(model.state_dict())
    compile_model(model, phases=[object()] * 3)  # compiles lazily, at the first call
    assert list(model.state_dict()) == keys and not any("_orig_mod" in k for k in keys)
    assert torch._dynamo.config.recompile_limit >= 16  # one static graph per size, train and eval
