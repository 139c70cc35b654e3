"""cifar10_resnet9: the ResNet-9 of the DAWNBench entries (Myrtle.ai / David Page, 2018), 94% target.

Kept beside `cifar10` (airbench's method, about 10x faster) as the 2018 baseline. Without the 8x8
cutout Page's 24-epoch result used and without TTA, 94% is a coin flip per seed.

Reads the standard CIFAR-10 python batches (data_batch_1..5, test_batch) from --data. Page's net
reached 94% in 24 epochs at batch 512 on one V100 (79 s); fast.ai's 2018 entry used 8 V100s. Data stay
on the device as uint8 and are augmented there (random crop with 4 px reflect padding, flip).
"""

import torch
from torch import nn

from trainer.recipes import Phase, Recipe
from trainer.recipes._layers import Scale


def _conv_bn(c_in: int, c_out: int, pool: bool = False) -> nn.Sequential:
    layers = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class _Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv_bn(channels, channels), _conv_bn(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def resnet9(num_classes: int) -> nn.Module:
    return nn.Sequential(
        _conv_bn(3, 64),
        _conv_bn(64, 128, pool=True),
        _Residual(128),
        _conv_bn(128, 256, pool=True),
        _conv_bn(256, 512, pool=True),
        _Residual(512),
        nn.AdaptiveMaxPool2d(1),
        nn.Flatten(),
        nn.Linear(512, num_classes, bias=False),
        Scale(0.125),
    )


RECIPE = Recipe(
    name="cifar10_resnet9",
    dataset="cifar10",
    model=resnet9,
    phases=(Phase(0.0, 32, 512),),
    epochs=24,
    max_lr=0.4,
    weight_decay=5e-4,
    label_smoothing=0.2,
    pct_start=0.2,
    target_metric="top1",
    target_acc=0.94,
    eval_batch_size=1000,
    log_every=20,
    workers=0,
)
