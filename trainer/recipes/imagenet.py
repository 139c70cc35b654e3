"""imagenet: ResNet-50 with progressive resizing, as in fast.ai's DAWNBench 2018 entry (93% top-5).

Reads ImageFolder `train/` and `val/` under --data. Small images first (fast epochs while the net
learns coarse features), full size later, a few epochs at 288 px at the end; batch size shrinks as
images grow so memory stays flat, and the LR follows the batch. Label smoothing, no weight decay on
BatchNorm and biases, the last BN of each residual block starts at zero (Goyal et al. 2017).
The last eval tests larger than the last phase trains (FixRes, Touvron et al. 2019: a random-resized
crop shows objects larger than a centre crop of the same size does, so testing at ~1.15x the training
size matches their apparent size) and averages in the mirror image (flip TTA), as FFCV's and fast.ai's
ResNet-50 runs do. The warmup is 3 of 35 epochs (FFCV warms up for 2; 25% was 8.75 epochs at low LR).
Pre-resized copies (`python -m trainer.preresize --data D`) make the small phases' decoding cheap.
"""

from torch import nn
from torchvision.models import resnet50

from trainer.recipes import Phase, Recipe


def resnet50_zero_init(num_classes: int) -> nn.Module:
    return resnet50(weights=None, num_classes=num_classes, zero_init_residual=True)


RECIPE = Recipe(
    name="imagenet",
    dataset="imagenet",
    model=resnet50_zero_init,
    phases=(Phase(0.0, 128, 256), Phase(0.45, 224, 192), Phase(0.88, 288, 128)),
    epochs=35,
    max_lr=0.3,
    weight_decay=5e-5,
    label_smoothing=0.1,
    pct_start=3 / 35,
    eval_size_scale=1.15,  # the last eval at 331 px after training at 288
    tta=1,
    target_metric="top5",
    target_acc=0.93,
    eval_batch_size=256,
    log_every=50,
    workers=8,
)
