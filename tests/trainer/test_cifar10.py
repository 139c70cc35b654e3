"""The cifar10 recipe (airbench's method) on small generated data in the real CIFAR-10 python format:
augmentation, TTA and eval are deterministic per seed, the loader makes no host copy per batch, the
whitening layer whitens, and a resume mid-run (lookahead state included) is bit-exact."""

from __future__ import annotations

import torch
from test_recipes_data import write_cifar
from trainer_helpers import read_events

from trainer.data import InMemory, ResumableSampler, load_cifar10
from trainer.evaluate import predict
from trainer.recipes import get_recipe

RECIPE = get_recipe("cifar10")


def train_set(n: int = 64) -> InMemory:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    return InMemory(x, torch.arange(n) % 10, torch.full((3,), 120.0), torch.full((3,), 60.0), 2, "alternate")


def first_batch(data: InMemory, seed: int, epoch: int) -> torch.Tensor:
    batches = [torch.arange(len(data))]
    return next(data.loader(batches, seed=seed, epoch=epoch, first=0, rank=0, size=32, train=True))[0]


def test_augmentation_is_deterministic_per_seed_and_flips_alternate() -> None:
    data = train_set()
    a = first_batch(data, seed=1, epoch=0)
    assert torch.equal(a, first_batch(data, seed=1, epoch=0))
    assert not torch.equal(a, first_batch(data, seed=2, epoch=0))
    # Alternating flips: the images flipped in epoch 0 are exactly those not flipped in epoch 1.
    bits = data._flip_bits(seed=1)
    assert 0 < bits.sum() < len(data)
    assert torch.equal(bits ^ True, data._flip_bits(seed=1) ^ bool(1 % 2))
    plain = InMemory(data.x, data.y, data.mean, data.std, 0, "alternate")
    flipped = [first_batch(plain, seed=1, epoch=e) for e in (0, 1)]
    base = (data.x.float() - 120.0) / 60.0
    for e, out in enumerate(flipped):
        mirrored = torch.tensor(
            [torch.equal(o, b.flip(2)) and not torch.equal(o, b) for o, b in zip(out, base, strict=True)]
        )
        assert torch.equal(mirrored, bits ^ bool(e % 2))


def test_loader_makes_no_host_copy_per_batch(monkeypatch) -> None:
    """One copy of the epoch's indices to the data's device, however many batches."""
    data = train_set(64)
    batches = ResumableSampler(64, 1, 0, seed=0).batches(epoch=0, batch_size=8)
    calls = []
    original = torch.Tensor.to

    def counting(self, *args, **kwargs):
        calls.append(self.shape)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", counting)
    out = list(data.loader(batches, seed=0, epoch=0, first=0, rank=0, size=32, train=True))
    assert len(out) == 8 and len(calls) == 1 and calls[0] == (64,)


def test_tta_and_eval_are_deterministic_and_whitening_whitens() -> None:
    torch.manual_seed(0)
    data = train_set(200)
    model = RECIPE.model(10)
    RECIPE.prepare(model, data)
    model.eval()
    x = (data.x[:8].float() - 120.0) / 60.0
    with torch.no_grad():
        views = [predict(model, x, tta) for tta in (0, 1, 2)]
        assert all(
            torch.equal(v, w) for v, w in zip(views, [predict(model, x, t) for t in (0, 1, 2)], strict=True)
        )
        assert not torch.equal(views[0], views[1]) and not torch.equal(views[1], views[2])
        # TTA 1 is the mean of the image's and its mirror image's logits.
        assert torch.allclose(views[1], 0.5 * (model(x) + model(x.flip(3))))
        # The frozen first layer decorrelates 2x2 patches: the covariance of its first half of
        # outputs is diagonal (each eigen-direction divided by its own spread).
        images = (data.x.float() - 120.0) / 60.0
        out = model[0](images) - model[0].bias[None, :, None, None]
        half = out[:, :12].permute(0, 2, 3, 1).reshape(-1, 12).double()
        cov = half.T @ half / len(half)
        off = cov - torch.diag(torch.diagonal(cov))
        assert off.abs().max() < 1e-3 * torch.diagonal(cov).max()
    assert not model[0].weight.requires_grad and model[0].bias.requires_grad


def run_cifar(trainer, data, run, *extra: str):
    return trainer.run(
        *("--recipe", "cifar10", "--data", str(data), "--run-dir", str(run), "--seed", "5"),
        *("--batch-size", "16", "--max-epochs", "2", "--log-every", "1", "--target-acc", "1.0"),
        *extra,
    )


def test_cifar10_runs_are_deterministic_and_resume_exactly(trainer, tmp_path) -> None:
    data = tmp_path / "cifar"
    data.mkdir()
    write_cifar(data, per_batch=20)
    assert len(load_cifar10(data).train) == 100  # 6 batches of 16 an epoch
    first, second = tmp_path / "a", tmp_path / "b"
    out = run_cifar(trainer, data, first, "--checkpoint-every", "0.01")
    assert out.returncode == 0, out.stderr[-3000:]
    events = read_events(first)
    evals = [e for e in events if e["kind"] == "eval"]
    assert len(evals) == 1 and evals[0]["tta"] == 2 and evals[0]["epoch"] == 2  # one eval, at the end
    assert events[0]["config"]["flip"] == "alternate" and events[0]["config"]["prepare"] == "init_whitening"
    ckpts = sorted(p for p in (first / "ckpt").iterdir() if p.name.startswith("step-"))
    middle = ckpts[0]  # --keep 3: the oldest kept is mid-run
    assert 0 < int(middle.name.split("-")[1]) < 12
    out = run_cifar(trainer, data, second, "--resume", str(middle))
    assert out.returncode == 0, out.stderr[-3000:]
    again = [e for e in read_events(second) if e["kind"] == "eval"]
    assert again[0]["top1"] == evals[0]["top1"] and again[0]["top5"] == evals[0]["top5"]

    def weights(run):
        latest = (run / "ckpt" / "LATEST").read_text().strip()
        return torch.load(run / "ckpt" / latest / "state.pt", weights_only=True)

    a, b = weights(first), weights(second)
    assert a["progress"]["step"] == b["progress"]["step"] == 12
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert all(torch.equal(a["lookahead"][k], b["lookahead"][k]) for k in a["lookahead"])
