"""Which loader a recipe's dataset takes: digits and CIFAR-10 (trainer/data.py, in memory) or an
ImageNet folder (trainer/folder.py). Its own module so that data.py never imports folder.py, which
builds on it."""

from __future__ import annotations

from pathlib import Path

from trainer import TrainerError
from trainer.data import Datasets, load_cifar10, load_digits


def load_datasets(dataset: str, data_dir: Path | None) -> Datasets:
    if dataset == "digits":
        return load_digits()
    if dataset == "cifar10":
        return load_cifar10(data_dir)
    if dataset == "imagenet":
        from trainer.folder import load_imagenet  # torchvision's ImageFolder only when it is used

        return load_imagenet(data_dir)
    raise TrainerError(
        f"unknown dataset {dataset!r}", "a recipe's dataset is one of digits, cifar10, imagenet"
    )
