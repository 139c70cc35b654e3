"""GPU throughput of the trainer's own step with its real loaders: images/s, MFU, the precision chosen.

One script for a GPU machine (on one without CUDA it says so and exits 0; `--cpu-smoke` runs it tiny
on the CPU to check the script itself):
1. Each recipe's step (`trainer.train.train_step`, the loop's own function) fed by its real loader:
   cifar10 and cifar10_resnet9 from CIFAR-10 python batches (the real ones with --cifar DIR, else
   synthetic data written in that format), imagenet's ResNet-50 at each phase size from a generated
   JPEG ImageFolder through trainer.folder's loader (uint8 collate, workers, pinned memory). The
   precision is trainer.precision's choice for this GPU, cudnn.benchmark on, channels_last where the
   recipe says. Timed with CUDA events after a warm-up that absorbs cuDNN autotuning and compilation.
2. ResNet-50 at 224 px on device-resident synthetic tensors, fp32 (TF32 off) and the chosen
   precision: the model's ceiling without a loader.
MFU counts 3 x the forward FLOPs (torch.utils.flop_counter, at the row's image size) against the GPU's
dense peak for the row's arithmetic: the bf16/fp16 tensor-core peak, or the fp32 peak for fp32 rows.
3. With --cifar DIR holding the real batches: cifar10's time to 94% through `python -m trainer.train`.

    python bench/gpu.py [--cifar DIR] [--steps 30] [--workers 8] [--compile]
"""

from __future__ import annotations

import argparse
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.common import print_table, write_result  # noqa: E402
from trainer.precision import choose_precision, configure_backends  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
# Dense peaks in TFLOPS from the vendors' data sheets: (bf16/fp16 tensor cores, fp32 without TF32).
PEAK_TFLOPS = {
    "V100": (125, 15.7),
    "T4": (65, 8.1),
    "A10G": (70, 31.2),
    "L4": (121, 30.3),
    "A100": (312, 19.5),
    "L40S": (362, 91.6),
    "H100": (989, 67),
    "H200": (989, 67),
    "B200": (2250, 80),
}


def peak_tflops(gpu: str, precision: str) -> float | None:
    peaks = next((v for k, v in PEAK_TFLOPS.items() if k in gpu), None)
    return None if peaks is None else peaks[1] if precision == "fp32" else peaks[0]


def forward_flops(model: torch.nn.Module, size: int, device: torch.device) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.eval()(torch.randn(1, 3, size, size, device=device))
    model.train()
    return float(counter.get_total_flops())


def write_synthetic_cifar(root: Path, n: int = 10000, seed: int = 0) -> None:
    """Learnable data in the real CIFAR-10 python format: a fixed pattern per class plus noise."""
    rng = np.random.default_rng(seed)
    templates = rng.integers(0, 256, (10, 3072)).astype(np.float32)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = rng.integers(0, 10, n)
        pixels = 0.5 * templates[labels] + 0.5 * rng.integers(0, 256, (n, 3072))
        with open(root / name, "wb") as f:
            pickle.dump({b"data": pixels.astype(np.uint8), b"labels": labels.tolist()}, f)


def write_jpeg_folder(root: Path, images: int, classes: int = 10, side: int = 400) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in range(classes):
            (root / split / f"n{c:08d}").mkdir(parents=True, exist_ok=True)
        for i in range(images if split == "train" else classes):
            pixels = rng.integers(0, 256, (side, side * 4 // 3, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / split / f"n{i % classes:08d}" / f"{i}.JPEG", quality=90)


def time_steps(recipe, data, size: int, batch: int, steps: int, args, device) -> dict:
    """The trainer's step, fed by `data.train.loader`, for `steps` steps after a warm-up."""
    from trainer.data import ResumableSampler
    from trainer.net import build_optimizer
    from trainer.precision import compile_model
    from trainer.train import train_step

    precision = choose_precision(device)
    model = recipe.model(data.num_classes).to(device)
    if recipe.prepare is not None:
        recipe.prepare(model, data.train)
    channels_last = device.type == "cuda" and recipe.channels_last
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    flops = forward_flops(model, size, device)
    optimizer = build_optimizer(recipe, model)
    if args.compile:
        compile_model(model, list(recipe.phases))
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    autocast, scaler = precision.autocast(), precision.scaler()
    sampler = ResumableSampler(len(data.train), 1, 0, 0)
    warm = 10 if not args.compile else 20

    def batches():
        epoch = 0
        while True:
            loader = data.train.loader(
                sampler.batches(epoch, batch),
                seed=0,
                epoch=epoch,
                first=0,
                rank=0,
                size=size,
                train=True,
                workers=args.workers,
            )
            yield from loader
            epoch += 1

    feed = batches()

    def timed(n: int) -> float:
        """Seconds for n of the trainer's own steps on the loader's batches, the device synced."""
        start = time.perf_counter()
        for _ in range(n):
            x, y = next(feed)
            x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
            train_step(model, x, y, criterion, optimizer, autocast, scaler)
        sync(device)
        return time.perf_counter() - start

    warm_s = timed(warm)
    seconds = timed(steps)
    images_per_s = batch * steps / seconds
    return row(recipe.name, size, batch, precision.name, images_per_s, flops, warm_s, steps, "trainer loader")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def row(name, size, batch, precision, images_per_s, flops, warm_s, steps, feed) -> dict:
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    peak = peak_tflops(gpu, precision)
    mfu = images_per_s * 3 * flops / (peak * 1e12) if peak else None
    return {
        "recipe": name,
        "size": size,
        "batch": batch,
        "precision": precision,
        "feed": feed,
        "images_per_s": images_per_s,
        "step_ms": 1000 * batch / images_per_s,
        "mfu": mfu,
        "peak_tflops": peak,
        "fwd_gflops": flops / 1e9,
        "warmup_s": warm_s,
        "steps": steps,
    }


def resnet50_ceiling(batch: int, steps: int, fp32: bool, device) -> dict:
    """ResNet-50 at 224 px on tensors already on the device: what the model alone reaches."""
    from torchvision.models import resnet50

    from trainer.precision import Precision
    from trainer.train import train_step

    precision = Precision("fp32", "forced", device.type) if fp32 else choose_precision(device)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = not fp32
    model = resnet50().to(device).to(memory_format=torch.channels_last)
    flops = forward_flops(model, 224, device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(batch, 3, 224, 224, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device=device)
    criterion, autocast, scaler = torch.nn.CrossEntropyLoss(), precision.autocast(), precision.scaler()
    t0 = time.perf_counter()
    for _ in range(10):
        train_step(model, x, y, criterion, optimizer, autocast, scaler)
    sync(device)
    warm_s, start = time.perf_counter() - t0, time.perf_counter()
    for _ in range(steps):
        train_step(model, x, y, criterion, optimizer, autocast, scaler)
    sync(device)
    images_per_s = batch * steps / (time.perf_counter() - start)
    configure_backends(device)  # TF32 back on for what follows
    return row(
        "resnet50 (no loader)", 224, batch, precision.name, images_per_s, flops, warm_s, steps, "tensors"
    )


def cifar10_time_to_target(cifar: Path) -> dict:
    from trainer.events import read_events

    run = Path(tempfile.mkdtemp(prefix="gpu-bench-")) / "run"
    cmd = [
        sys.executable,
        "-m",
        "trainer.train",
        "--recipe",
        "cifar10",
        "--data",
        str(cifar),
        "--run-dir",
        str(run),
    ]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    events = read_events(run / "events.jsonl")
    start = next(e for e in events if e["kind"] == "start")
    hit = next((e for e in events if e["kind"] == "eval" and e["top1"] >= 0.94), None)
    return {
        "exit": out.returncode,
        "seconds_to_94": (hit["t"] - start["t"]) if hit else None,
        "best_top1": max((e["top1"] for e in events if e["kind"] == "eval"), default=None),
        "wall_s": time.perf_counter() - t0,
        "stderr_tail": out.stderr[-2000:] if out.returncode else "",
    }


def step_rows(args: argparse.Namespace, device: torch.device, small: bool) -> list[dict]:
    """The step timed for each CIFAR-10 recipe and each ImageNet phase, then ResNet-50's ceiling."""
    from trainer.data import load_cifar10
    from trainer.folder import load_imagenet
    from trainer.recipes import get_recipe

    work = Path(tempfile.mkdtemp(prefix="gpu-bench-data-"))
    cifar_dir = args.cifar if args.cifar else work / "cifar"
    if not args.cifar:
        cifar_dir.mkdir()
        write_synthetic_cifar(cifar_dir, n=200 if small else 10000)
    rows = []
    for name in ("cifar10", "cifar10_resnet9"):
        recipe = get_recipe(name)
        data = load_cifar10(cifar_dir)
        data.train.crop_pad = recipe.translate if recipe.translate is not None else data.train.crop_pad
        data.train.flip = recipe.flip or data.train.flip
        data.train.to(device)
        batch = 32 if small else recipe.phases[0].batch_size
        rows.append(time_steps(recipe, data, 32, batch, 2 if small else args.steps, args, device))
    folder = work / "imagenet"
    write_jpeg_folder(folder, images=16 if small else 2048, side=64 if small else 400)
    imagenet = get_recipe("imagenet")
    data = load_imagenet(folder)
    data.train.to(device)
    for phase in imagenet.phases:
        size, batch = (32, 4) if small else (phase.size, phase.batch_size)
        rows.append(time_steps(imagenet, data, size, batch, 2 if small else args.steps, args, device))
    for fp32 in (True, False):
        rows.append(resnet50_ceiling(4 if small else 256, 2 if small else args.steps, fp32, device))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cifar", type=Path, help="directory with the real CIFAR-10 python batches")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--workers", type=int, default=8, help="ImageFolder loader processes")
    parser.add_argument("--compile", action="store_true", help="torch.compile as --compile does")
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny, on the CPU: checks the script only")
    args = parser.parse_args()
    if not torch.cuda.is_available() and not args.cpu_smoke:
        print("bench/gpu.py: no CUDA device here, nothing to measure; run it on a GPU machine")
        return
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    small = args.cpu_smoke
    configure_backends(device)
    rows = step_rows(args, device, small)
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu (smoke)"
    chosen = choose_precision(device)
    print_table(
        f"{gpu}: the trainer's step; precision {chosen.name} ({chosen.why})"
        + (", compiled" if args.compile else ""),
        ["recipe", "px", "batch", "precision", "feed", "images/s", "step ms", "MFU", "peak TF", "warm-up s"],
        [
            [
                r["recipe"],
                r["size"],
                r["batch"],
                r["precision"],
                r["feed"],
                r["images_per_s"],
                r["step_ms"],
                f"{r['mfu']:.1%}" if r["mfu"] else "?",
                r["peak_tflops"] or "?",
                r["warmup_s"],
            ]
            for r in rows
        ],
    )
    cifar = cifar10_time_to_target(args.cifar) if args.cifar and not small else None
    if cifar:
        print(
            f"\ncifar10 on the real batches: {cifar['seconds_to_94'] or 'not reached'} s to 94%, "
            f"best {cifar['best_top1']}, exit {cifar['exit']}"
        )
    if not small:
        write_result(
            "gpu",
            {
                "gpu": gpu,
                "torch": torch.__version__,
                "cuda": torch.version.cuda,
                "precision": chosen.name,
                "why": chosen.why,
                "compile": args.compile,
                "cifar_data": "real" if args.cifar else "synthetic, CIFAR-10 python format",
                "rows": rows,
                "cifar10_time_to_94": cifar,
            },
        )


if __name__ == "__main__":
    main()
