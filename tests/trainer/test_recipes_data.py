"""cifar10 and imagenet on tiny data written in the real formats; the sampler and the augmentation."""

from __future__ import annotations

import pickle

import numpy as np
import torch
from PIL import Image
from trainer_helpers import read_events

from trainer.data import InMemory, ResumableSampler, eval_batches, load_cifar10


def write_cifar(root, per_batch: int = 40) -> None:
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            b"labels": rng.integers(0, 10, per_batch).tolist(),
            b"batch_label": name.encode(),
        }
        with open(root / name, "wb") as f:
            pickle.dump(batch, f)


def write_image_folder(root, classes=("n01440764", "n01443537"), train_per_class=4, val_per_class=2) -> None:
    rng = np.random.default_rng(0)
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (60 + 7 * i, 80, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / c / f"{c}_{i}.JPEG", format="JPEG")


def test_cifar10_loads_python_batches_and_trains_a_few_steps(trainer, tmp_path) -> None:
    data = tmp_path / "cifar-10-batches-py"
    data.mkdir()
    write_cifar(data)
    loaded = load_cifar10(tmp_path)  # finds the cifar-10-batches-py directory inside
    assert loaded.train.x.shape == (200, 3, 32, 32) and loaded.val.x.shape == (40, 3, 32, 32)
    run = tmp_path / "run"
    out = trainer.run(
        "--recipe",
        "cifar10",
        "--data",
        str(data),
        "--run-dir",
        str(run),
        "--batch-size",
        "16",
        "--max-steps",
        "3",
        "--log-every",
        "1",
    )
    assert out.returncode == 0, out.stderr
    events = read_events(run)
    assert [e["step"] for e in events if e["kind"] == "step"] == [1, 2, 3]
    evals = [e for e in events if e["kind"] == "eval"]
    assert len(evals) == 1 and 0.0 <= evals[0]["top1"] <= 1.0 and "top5" in evals[0]
    assert events[-1]["kind"] == "done" and events[-1]["reason"] == "max_steps"


def test_imagenet_image_folder_with_a_resize_phase_change(trainer, tmp_path) -> None:
    data = tmp_path / "imagenet"
    write_image_folder(data)
    run = tmp_path / "run"
    out = trainer.run(
        "--recipe",
        "imagenet",
        "--data",
        str(data),
        "--run-dir",
        str(run),
        "--batch-size",
        "4",
        "--max-epochs",
        "2",
        "--workers",
        "1",
        "--log-every",
        "1",
        "--target-acc",
        "1.0",
        timeout=180,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    events = read_events(run)
    epochs = [e for e in events if e["kind"] == "epoch"]
    assert [e["size"] for e in epochs] == [128, 224]  # progressive resizing: the phase changed
    evals = [e for e in events if e["kind"] == "eval"]
    assert len(evals) == 2 and "top5" not in evals[0]  # two classes: top-5 means nothing
    assert events[0]["num_classes"] == 2 and events[-1]["reason"] == "schedule"


def test_sampler_shards_are_disjoint_and_resume_mid_epoch() -> None:
    samplers = [ResumableSampler(103, 2, rank, seed=7) for rank in range(2)]
    shards = [torch.cat(s.batches(epoch=3, batch_size=10)) for s in samplers]
    assert len(set(shards[0].tolist()) & set(shards[1].tolist())) == 0
    assert samplers[0].steps_per_epoch(10) == 5 and len(shards[0]) == 50
    full = samplers[1].batches(epoch=3, batch_size=10)
    assert [b.tolist() for b in samplers[1].batches(epoch=3, batch_size=10, start=2)] == [
        b.tolist() for b in full[2:]
    ]
    assert samplers[0].batches(4, 10)[0].tolist() != samplers[0].batches(3, 10)[0].tolist()
    assert sorted(torch.cat([torch.cat(eval_batches(11, 3, r, 2)) for r in range(3)]).tolist()) == list(
        range(11)
    )


def test_augmentation_is_a_function_of_seed_epoch_and_batch() -> None:
    x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    data = InMemory(x, torch.arange(8), torch.zeros(3), torch.ones(3), crop_pad=4, flip="random")
    idx = [torch.arange(8)]

    def one(seed, epoch, first):
        return next(data.loader(idx, seed=seed, epoch=epoch, first=first, rank=0, size=32, train=True))[0]

    a = one(1, 0, 5)
    assert a.shape == (8, 3, 32, 32)
    assert (
        torch.equal(a, one(1, 0, 5)) and not torch.equal(a, one(1, 0, 6)) and not torch.equal(a, one(2, 0, 5))
    )
    plain = next(data.loader(idx, seed=1, epoch=0, first=5, rank=0, size=32, train=False))[0]
    assert torch.equal(plain, x.float())  # held-out data is never augmented
