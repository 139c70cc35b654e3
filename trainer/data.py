"""Data: the digits, CIFAR-10 and ImageFolder loaders, and a distributed sampler that resumes mid-epoch.

Every random choice about data is a pure function of (seed, epoch, position): the epoch's order comes
from a generator seeded by (seed, epoch), and each batch's augmentation from one seeded by (seed, epoch,
batch, rank). A resume therefore needs only (epoch, batch index) to see exactly the samples, and the
augmented pixels, that the uninterrupted run would have seen next.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from trainer import TrainerError

Batch = tuple[torch.Tensor, torch.Tensor]


def _mix(*parts: int) -> int:
    """A 63-bit seed from integers (stable across processes, unlike hash())."""
    acc = 0x9E3779B97F4A7C15
    for part in parts:
        acc = (acc ^ (int(part) + 0x9E3779B97F4A7C15 + (acc << 6) + (acc >> 2))) & 0xFFFFFFFFFFFFFFFF
    return acc & 0x7FFFFFFFFFFFFFFF


# ----------------------------------------------------------------------------------------------------
# Sampling
@dataclass(frozen=True)
class ResumableSampler:
    """Shards a shuffled epoch across ranks, in batches; resumable at any batch of any epoch."""

    num_samples: int
    world_size: int
    rank: int
    seed: int

    def steps_per_epoch(self, batch_size: int) -> int:
        return (self.num_samples // self.world_size) // batch_size  # drop_last: every step is full

    def batches(self, epoch: int, batch_size: int, start: int = 0) -> list[torch.Tensor]:
        """This rank's batches of `epoch` from batch `start` on (all ranks get the same count)."""
        g = torch.Generator().manual_seed(_mix(self.seed, epoch))
        order = torch.randperm(self.num_samples, generator=g)
        per_rank = self.num_samples // self.world_size
        mine = order[self.rank : per_rank * self.world_size : self.world_size]
        steps = per_rank // batch_size
        return [mine[i * batch_size : (i + 1) * batch_size] for i in range(start, steps)]


def eval_batches(num_samples: int, world_size: int, rank: int, batch_size: int) -> list[torch.Tensor]:
    """This rank's share of the held-out set, in order; shares differ by at most one sample."""
    mine = torch.arange(rank, num_samples, world_size)
    return list(torch.split(mine, batch_size)) if len(mine) else []


# ----------------------------------------------------------------------------------------------------
# In-memory data sets (digits, CIFAR-10): tensors on the device, augmented there in whole batches
@dataclass
class InMemory:
    x: torch.Tensor  # (N, C, H, W) uint8 or float
    y: torch.Tensor  # (N,) int64
    mean: torch.Tensor  # (C,) per-channel mean in x's units
    std: torch.Tensor
    crop_pad: int = 0  # random translation: a crop after reflect padding by this many pixels (0: none)
    flip: str = "none"  # "random": each image flipped with p=0.5 each epoch; "alternate": a random half
    # in even epochs and exactly the other half in odd ones (airbench: each image seen both ways in two
    # epochs, as plain random flips only do by chance); "none"

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device: torch.device) -> InMemory:
        self.x, self.y = self.x.to(device), self.y.to(device)
        self.mean, self.std = self.mean.to(device), self.std.to(device)
        return self

    def loader(
        self,
        batches: list[torch.Tensor],
        *,
        seed: int,
        epoch: int,
        first: int,
        rank: int,
        size: int,
        train: bool,
        workers: int = 0,
    ) -> Iterator[Batch]:
        if not batches:
            return
        # The epoch's indices go to the device in one copy (pinned, so it does not wait): a copy per
        # batch from pageable memory would make the host wait for the GPU at every step.
        order = torch.cat(batches)
        if self.x.device.type == "cuda":
            order = order.pin_memory()
        order = order.to(self.x.device, non_blocking=True).split([len(b) for b in batches])
        flip_bits = self._flip_bits(seed) if train and self.flip == "alternate" else None
        for i, idx in enumerate(order, start=first):
            x = (self.x[idx].float() - self.mean[:, None, None]) / self.std[:, None, None]
            if train and (self.crop_pad or self.flip != "none"):
                g = torch.Generator(device=x.device).manual_seed(_mix(seed, epoch, i, rank))
                flip = None if flip_bits is None else flip_bits[idx] ^ bool(epoch % 2)
                x = self._augment(x, g, flip)
            yield x, self.y[idx]

    def _flip_bits(self, seed: int) -> torch.Tensor:
        """One random bit per image, fixed for the run (a function of the seed only)."""
        g = torch.Generator(device=self.x.device).manual_seed(_mix(seed, 0xF11B))
        return torch.rand(len(self), generator=g, device=self.x.device) < 0.5

    def _augment(self, x: torch.Tensor, g: torch.Generator, flip: torch.Tensor | None) -> torch.Tensor:
        n, _, h, w = x.shape
        if self.crop_pad:
            p = self.crop_pad
            padded = torch.nn.functional.pad(x, (p, p, p, p), mode="reflect")
            dy = torch.randint(0, 2 * p + 1, (n, 1), generator=g, device=x.device)
            dx = torch.randint(0, 2 * p + 1, (n, 1), generator=g, device=x.device)
            rows = (dy + torch.arange(h, device=x.device))[:, None, :, None]
            cols = (dx + torch.arange(w, device=x.device))[:, None, None, :]
            chans = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
            x = padded[torch.arange(n, device=x.device)[:, None, None, None], chans, rows, cols]
        if self.flip != "none":
            mask = flip if flip is not None else torch.rand(n, generator=g, device=x.device) < 0.5
            x = torch.where(mask[:, None, None, None], x.flip(3), x)
        return x


@dataclass
class Datasets:
    train: InMemory | FolderData  # noqa: F821 (trainer.folder)
    val: InMemory | FolderData  # noqa: F821
    num_classes: int
    description: str  # what was loaded, for the log


def load_digits() -> Datasets:
    """scikit-learn's 8x8 digits, 80/20 stratified split with a fixed seed (the held-out set never moves)."""
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32)[:, None] / 16.0
    y = torch.tensor(bunch.target, dtype=torch.int64)
    tr, te = train_test_split(np.arange(len(y)), test_size=0.2, random_state=0, stratify=bunch.target)
    mean, std = x[tr].mean().reshape(1), x[tr].std().reshape(1)
    train = InMemory(x[tr], y[tr], mean, std)
    val = InMemory(x[te], y[te], mean, std)
    return Datasets(train, val, 10, f"digits: {len(tr)} train, {len(te)} held out (8x8, sklearn)")


CIFAR_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR_TEST = "test_batch"
CIFAR_LAYOUT = "the CIFAR-10 python batches: data_batch_1 .. data_batch_5 and test_batch (pickled dicts with b'data' uint8 N x 3072 and b'labels')"


def load_cifar10(data_dir: Path | None) -> Datasets:
    """The standard CIFAR-10 python batches, from DIR or DIR/cifar-10-batches-py."""
    root = _require_dir(data_dir, "cifar10", CIFAR_LAYOUT)
    if (root / "cifar-10-batches-py").is_dir():
        root = root / "cifar-10-batches-py"
    missing = [n for n in [*CIFAR_TRAIN, CIFAR_TEST] if not (root / n).is_file()]
    if missing:
        raise TrainerError(
            f"--data {root}: missing {', '.join(missing)}; expected {CIFAR_LAYOUT}",
            "download cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html and untar it there",
        )
    train_x, train_y = zip(*(_cifar_batch(root / n) for n in CIFAR_TRAIN), strict=True)
    test_x, test_y = _cifar_batch(root / CIFAR_TEST)
    x, y = torch.cat(train_x), torch.cat(train_y)
    mean = x.float().mean(dim=(0, 2, 3))
    std = x.float().std(dim=(0, 2, 3))
    train = InMemory(x, y, mean, std, crop_pad=4, flip="random")  # the recipe may change both
    val = InMemory(test_x, test_y, mean, std)
    return Datasets(train, val, 10, f"cifar10: {len(y)} train, {len(test_y)} test from {root}")


def _cifar_batch(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="bytes")
        data = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(d[b"labels"], dtype=np.int64)
        if len(labels) != len(data) or labels.min() < 0 or labels.max() > 9:
            raise ValueError("labels do not match the images")
    except (
        OSError,
        pickle.UnpicklingError,
        EOFError,
        KeyError,
        ValueError,
        TypeError,
        AttributeError,
    ) as err:
        raise TrainerError(
            f"--data: {path} is not a CIFAR-10 python batch ({err}); expected {CIFAR_LAYOUT}",
            "re-extract cifar-10-python.tar.gz; the file may be truncated",
        ) from None
    return torch.from_numpy(data.copy()), torch.from_numpy(labels)


def _require_dir(data_dir: Path | None, recipe: str, layout: str) -> Path:
    if data_dir is None:
        raise TrainerError(
            f"recipe {recipe!r} needs --data DIR holding {layout}", "pass --data with that directory"
        )
    if not Path(data_dir).is_dir():
        raise TrainerError(f"--data {data_dir}: no such directory; expected {layout}", "check the path")
    return Path(data_dir)
