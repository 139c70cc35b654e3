"""ImageNet input on a tiny generated JPEG ImageFolder: the fast path (pre-resized copies, uint8
collate normalised after the copy, persistent workers) gives the plain ImageFolder path's labels and
tensor shapes; pre-resizing is idempotent."""

from __future__ import annotations

import torch
from PIL import Image
from test_recipes_data import write_image_folder

from trainer.data import eval_batches
from trainer.folder import COMPLETE, load_imagenet, needed_side
from trainer.preresize import preresize, sides_for
from trainer.recipes import get_recipe


def plain(root, split: str, size: int):
    """torchvision's ImageFolder with the textbook float32 transforms, decoded from the originals."""
    from torchvision import transforms as T
    from torchvision.datasets import ImageFolder

    norm = T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    tf = T.Compose([T.Resize(needed_side(size)), T.CenterCrop(size), T.ToTensor(), norm])
    return ImageFolder(str(root / split), transform=tf)


def test_fast_path_gives_the_plain_paths_labels_and_shapes(tmp_path) -> None:
    root = tmp_path / "imagenet"
    write_image_folder(root, train_per_class=3, val_per_class=3)
    size = 32
    assert preresize(root, [needed_side(size)]) == {needed_side(size): 12}
    data = load_imagenet(root)
    side, samples = data.val.source(size)
    assert side == needed_side(size) and all(f"resized-{side}" in p for p, _ in samples)
    batches = eval_batches(len(data.val), 1, 0, 4)
    fast = list(data.val.loader(batches, seed=0, epoch=0, first=0, rank=0, size=size, train=False, workers=1))
    reference = plain(root, "val", size)
    ref_x = torch.stack([reference[i][0] for i in range(len(reference))])
    ref_y = torch.tensor(reference.targets)
    x, y = torch.cat([b[0] for b in fast]), torch.cat([b[1] for b in fast])
    assert torch.equal(y, ref_y) and x.shape == ref_x.shape == (6, 3, size, size) and x.dtype == ref_x.dtype
    # Same images, normalised the same way (the copies are resized JPEGs: close, not equal, pixels).
    assert (x.mean() - ref_x.mean()).abs() < 0.5
    # Training: same labels as ImageFolder's for the same indices, same shapes, one persistent loader.
    train_batches = [torch.tensor([0, 5, 2]), torch.tensor([4, 1, 3])]
    epochs = [
        list(
            data.train.loader(train_batches, seed=1, epoch=e, first=0, rank=0, size=24, train=True, workers=1)
        )
        for e in (0, 1, 0)
    ]
    targets = torch.tensor(plain(root, "train", 24).targets)
    for run in epochs:
        assert [b[1].tolist() for b in run] == [targets[b].tolist() for b in train_batches]
        assert all(b[0].shape == (3, 3, 24, 24) and b[0].dtype == torch.float32 for b in run)
    assert len(data.train._loaders) == 1  # the workers were kept across epochs
    assert all(torch.equal(a[0], b[0]) for a, b in zip(epochs[0], epochs[2], strict=True))  # (seed, epoch)
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(epochs[0], epochs[1], strict=True))


def test_preresize_is_idempotent_and_finishes_a_partial_copy(tmp_path) -> None:
    root = tmp_path / "imagenet"
    write_image_folder(root)
    assert preresize(root, [40, 50]) == {40: 12, 50: 12}
    copy = root / "resized-40"
    files = sorted(p for p in copy.rglob("*.JPEG"))
    stamps = {p: p.stat().st_mtime_ns for p in files}
    assert all(min(Image.open(p).size) == 40 for p in files)
    assert preresize(root, [40, 50]) == {40: 0, 50: 0}  # nothing written the second time
    assert {p: p.stat().st_mtime_ns for p in files} == stamps
    files[0].unlink()  # a crash mid-copy: one file missing, no completion mark
    (copy / COMPLETE).unlink()
    assert load_imagenet(root).train.resized.keys() == {50}  # an incomplete copy is not used
    assert preresize(root, [40]) == {40: 1}
    assert sorted(copy.rglob("*.JPEG")) == files and not list(copy.rglob("*.tmp*"))
    assert sides_for(get_recipe("imagenet")) == [146, 256, 329, 378]  # each phase's, and the FixRes eval's
