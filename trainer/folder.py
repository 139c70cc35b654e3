"""ImageFolder data (ImageNet): JPEGs decoded by persistent DataLoader workers into uint8 batches, in
pinned memory, normalised on the device; pre-resized copies per phase when they exist.

What makes it fast, after fast.ai's DAWNBench pipeline and FFCV's defaults:
- pre-resized copies (`python -m trainer.preresize`): decoding a 500 px JPEG to crop 128 px from it
  costs most of a worker's time; a copy whose short side is what the phase needs decodes ~5x faster;
- uint8 collate: a batch crosses to the GPU as bytes (1/4 of float32's) and is normalised there;
- one DataLoader per (size, train/eval), its workers kept between epochs (`persistent_workers`): no
  fork and no dataset copy each epoch; the epoch travels with each index, so the augmentation stays a
  function of (seed, epoch, sample) however the workers are reused;
- pinned memory, so the copy to the GPU is asynchronous.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from trainer import TrainerError

Batch = tuple[torch.Tensor, torch.Tensor]
IMAGENET_LAYOUT = "ImageFolder directories train/CLASS/*.jpg and val/CLASS/*.jpg (the same classes in both)"
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
RESIZE_RATIO = 1.14  # eval: resize the short side to size x 1.14, then centre-crop `size` (the 256/224 rule)
RESIZED = "resized-{side}"  # DATA/resized-160/{train,val}/CLASS/*.JPEG: a copy with short side 160
COMPLETE = ".complete"  # written last into a resized copy: the copy is whole


def needed_side(size: int) -> int:
    """The short side a source image needs so that neither train nor eval crops upscale it."""
    return int(size * RESIZE_RATIO + 0.999)


def seed_of(*parts: int) -> int:
    from trainer.data import _mix  # one seed mixer for every loader

    return _mix(*parts)


class _SeededSamples(torch.utils.data.Dataset):
    """Decodes and transforms sample i as uint8, with the torch RNG seeded from (seed, epoch, i): the
    augmentation depends neither on which worker draws it nor on where a resume started."""

    def __init__(self, samples: list[tuple[str, int]], transform, seed: int) -> None:
        self.samples, self.transform, self.seed = samples, transform, seed

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: tuple[int, int]):
        from torchvision.datasets.folder import default_loader

        epoch, i = key
        path, label = self.samples[i]
        image = default_loader(path)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed_of(self.seed, epoch, i))
            return self.transform(image), label


class _EpochBatches:
    """A batch sampler whose batches are replaced each epoch, so a persistent loader can be reused."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[int, int]]] = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


@dataclass
class FolderData:
    samples: list[tuple[str, int]]  # (path, class index), as torchvision's ImageFolder lists them
    train: bool
    resized: dict[int, list[tuple[str, int]]] = field(default_factory=dict)  # short side -> same samples
    device: torch.device = torch.device("cpu")
    _loaders: dict = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.samples)

    def to(self, device: torch.device) -> FolderData:
        self.device = device
        return self

    def source(self, size: int) -> tuple[int | None, list[tuple[str, int]]]:
        """The smallest pre-resized copy big enough for `size` (None: the originals)."""
        sides = sorted(s for s in self.resized if s >= needed_side(size))
        return (sides[0], self.resized[sides[0]]) if sides else (None, self.samples)

    def transform(self, size: int, train: bool):
        from torchvision import transforms as T

        if train:
            steps = [T.RandomResizedCrop(size, scale=(0.35, 1.0)), T.RandomHorizontalFlip()]
        else:
            steps = [T.Resize(needed_side(size)), T.CenterCrop(size)]
        return T.Compose([*steps, T.PILToTensor()])  # uint8 CHW: normalised on the device

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
        key = (size, train, seed, workers)
        if key not in self._loaders:
            # One loader kept at a time (the phase's): a new size's replaces it and its workers exit.
            self._loaders.clear()
            _, samples = self.source(size)
            sampler = _EpochBatches()
            loader = torch.utils.data.DataLoader(
                _SeededSamples(samples, self.transform(size, train), seed),
                batch_sampler=sampler,
                num_workers=workers,
                pin_memory=self.device.type == "cuda",
                persistent_workers=workers > 0,
                prefetch_factor=4 if workers > 0 else None,
            )
            self._loaders[key] = (loader, sampler)
        loader, sampler = self._loaders[key]
        sampler.batches = [[(epoch, i) for i in b.tolist()] for b in batches]
        mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1) * 255
        std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1) * 255
        for x, y in loader:
            x = x.to(self.device, non_blocking=True)
            yield (x.float() - mean) / std, y.to(self.device, non_blocking=True)


def _require_dir(data_dir: Path | None) -> Path:
    if data_dir is None:
        raise TrainerError(
            f"recipe 'imagenet' needs --data DIR holding {IMAGENET_LAYOUT}", "pass --data with that directory"
        )
    if not Path(data_dir).is_dir():
        raise TrainerError(
            f"--data {data_dir}: no such directory; expected {IMAGENET_LAYOUT}", "check the path"
        )
    return Path(data_dir)


def resized_copies(root: Path, samples: list[tuple[str, int]]) -> dict[int, list[tuple[str, int]]]:
    """Every complete pre-resized copy under --data, as the same samples at their paths in the copy."""
    copies = {}
    for copy in root.glob(RESIZED.format(side="*")):
        side = copy.name.rsplit("-", 1)[-1]
        if side.isdigit() and (copy / COMPLETE).is_file():
            copies[int(side)] = [(str(copy / Path(p).relative_to(root)), c) for p, c in samples]
    return copies


def load_imagenet(data_dir: Path | None):
    """ImageFolder train/ and val/ under --data (the classes must match), and any resized copies."""
    from torchvision.datasets import ImageFolder

    from trainer.data import Datasets

    root = _require_dir(data_dir)
    found = {}
    for split in ("train", "val"):
        try:
            found[split] = ImageFolder(str(root / split))
        except (FileNotFoundError, OSError) as err:
            raise TrainerError(
                f"--data {root}: {split}/ is not usable ({err}); expected {IMAGENET_LAYOUT}",
                "point --data at the directory that holds train/ and val/",
            ) from None
    if found["train"].classes != found["val"].classes:
        raise TrainerError(
            f"--data {root}: train/ has {len(found['train'].classes)} classes and val/ has "
            f"{len(found['val'].classes)}, or their names differ; expected {IMAGENET_LAYOUT}",
            "give val/ the same class directories as train/",
        )
    train, val = found["train"], found["val"]
    copies = resized_copies(root, train.samples)
    return Datasets(
        FolderData(train.samples, True, copies),
        FolderData(val.samples, False, resized_copies(root, val.samples)),
        len(train.classes),
        f"imagenet: {len(train)} train, {len(val)} val images, {len(train.classes)} classes from {root}"
        + (f"; resized copies {sorted(copies)}" if copies else ""),
    )
