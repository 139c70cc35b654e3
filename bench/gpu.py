"""GPU throughput: ResNet-50 images/s and model FLOPs utilisation, and the cifar10 recipe's time to 94%.

One script for a GPU machine (on one without CUDA it says so and exits 0):
1. ResNet-50 training steps on synthetic 224 px data, one GPU: plain fp32 (TF32 off), bf16 autocast
   (fp16 + grad scaler where bf16 is missing, e.g. V100), + channels_last, + torch.compile. Timed with
   CUDA events after a warm-up that absorbs cuDNN autotuning and compilation. MFU counts 3 x the forward
   FLOPs (8.18 GFLOPs per 224 px image) against the GPU's peak dense bf16/fp16 tensor rate.
2. The cifar10 recipe through the real trainer (`python -m trainer.train`): on the real CIFAR-10 python
   batches when --cifar DIR has them, else on synthetic, learnable data written in that same format
   (each class a fixed random pattern plus noise), and the table says which.

    python bench/gpu.py [--cifar DIR] [--batch 128] [--steps 30] [--skip-cifar]
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
from trainer.precision import choose_precision  # noqa: E402

RESNET50_FWD_FLOPS = 8.18e9  # per 224 px image (4.09 GMACs)
PEAK_TFLOPS = {  # dense bf16/fp16 tensor-core peak per GPU, from the vendors' data sheets
    "V100": 125,
    "T4": 65,
    "A10G": 70,
    "L4": 121,
    "A100": 312,
    "L40S": 362,
    "H100": 989,
    "H200": 989,
    "B200": 2250,
}


def peak_tflops(name: str) -> float | None:
    return next((v for k, v in PEAK_TFLOPS.items() if k in name), None)


def resnet50_variant(name: str, batch: int, steps: int) -> dict:
    from torchvision.models import resnet50

    torch.backends.cuda.matmul.allow_tf32 = name != "fp32"
    torch.backends.cudnn.allow_tf32 = name != "fp32"
    torch.backends.cudnn.benchmark = True
    torch.cuda.empty_cache()  # what the previous variant left
    model = resnet50().cuda()
    channels_last = name in ("+channels_last", "+compile")
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    precision = choose_precision(torch.device("cuda"))  # the trainer's own choice, by compute capability
    amp = name != "fp32" and precision.dtype is not None
    dtype = precision.dtype
    scaler = precision.scaler() if amp else torch.amp.GradScaler("cuda", enabled=False)
    step_model = torch.compile(model) if name == "+compile" else model
    x = torch.randn(batch, 3, 224, 224, device="cuda")
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device="cuda")
    criterion = torch.nn.CrossEntropyLoss()

    def step() -> None:
        with torch.autocast("cuda", dtype=dtype, enabled=amp):
            loss = criterion(step_model(x), y)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)

    t_warm = time.perf_counter()
    for _ in range(10 if name != "+compile" else 15):
        step()
    torch.cuda.synchronize()
    warm_s = time.perf_counter() - t_warm
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(steps):
        step()
    end.record()
    torch.cuda.synchronize()
    seconds = start.elapsed_time(end) / 1000
    images_per_s = batch * steps / seconds
    peak = peak_tflops(torch.cuda.get_device_name())
    mfu = images_per_s * 3 * RESNET50_FWD_FLOPS / (peak * 1e12) if peak else None
    return {
        "variant": name,
        "amp": precision.name if amp else "off",
        "images_per_s": images_per_s,
        "mfu": mfu,
        "warmup_s": warm_s,
        "batch": batch,
        "steps": steps,
    }


def write_synthetic_cifar(root: Path, seed: int = 0) -> None:
    """Learnable synthetic data in the real CIFAR-10 python format: a fixed pattern per class plus noise."""
    rng = np.random.default_rng(seed)
    templates = rng.integers(0, 256, (10, 3072)).astype(np.float32)
    for name, n in [(f"data_batch_{i}", 10000) for i in range(1, 6)] + [("test_batch", 10000)]:
        labels = rng.integers(0, 10, n)
        pixels = 0.5 * templates[labels] + 0.5 * rng.integers(0, 256, (n, 3072))
        with open(root / name, "wb") as f:
            pickle.dump({b"data": pixels.astype(np.uint8), b"labels": labels.tolist()}, f)


def cifar10_time_to_target(cifar: Path | None) -> dict:
    from trainer.data import CIFAR_TEST, CIFAR_TRAIN
    from trainer.events import read_events

    work = Path(tempfile.mkdtemp(prefix="gpu-bench-"))
    real = cifar is not None and all((cifar / n).is_file() for n in [*CIFAR_TRAIN, CIFAR_TEST])
    data = cifar if real else work / "synthetic-cifar"
    if not real:
        data.mkdir()
        write_synthetic_cifar(data)
    run = work / "run"
    cmd = [
        sys.executable,
        "-m",
        "trainer.train",
        "--recipe",
        "cifar10",
        "--data",
        str(data),
        "--run-dir",
        str(run),
    ]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    events = read_events(run / "events.jsonl")
    start = next(e for e in events if e["kind"] == "start")
    hit = next((e for e in events if e["kind"] == "eval" and e["top1"] >= 0.94), None)
    return {
        "data": "real CIFAR-10" if real else "synthetic, in the CIFAR-10 python format",
        "exit": out.returncode,
        "seconds_to_94": (hit["t"] - start["t"]) if hit else None,
        "epochs_to_94": hit["epoch"] if hit else None,
        "best_top1": max((e["top1"] for e in events if e["kind"] == "eval"), default=None),
        "wall_s": wall,
        "stderr_tail": out.stderr[-2000:] if out.returncode else "",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cifar", type=Path, help="directory with the real CIFAR-10 python batches")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--skip-cifar", action="store_true")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("bench/gpu.py: no CUDA device here, nothing to measure; run it on a GPU machine")
        return
    gpu = torch.cuda.get_device_name()
    results = [
        resnet50_variant(v, args.batch, args.steps)
        for v in ("fp32", "bf16 autocast", "+channels_last", "+compile")
    ]
    base = results[0]["images_per_s"]
    print_table(
        f"ResNet-50 training on {gpu}, batch {args.batch}, 224 px synthetic (peak {peak_tflops(gpu)} TFLOPS)",
        ["variant", "amp", "images/s", "x fp32", "MFU", "warm-up s"],
        [
            [
                r["variant"],
                r["amp"],
                r["images_per_s"],
                f"{r['images_per_s'] / base:.2f}x",
                f"{r['mfu']:.1%}" if r["mfu"] else "?",
                r["warmup_s"],
            ]
            for r in results
        ],
    )
    cifar = None if args.skip_cifar else cifar10_time_to_target(args.cifar)
    if cifar:
        print_table(
            "cifar10 recipe (ResNet-9, 24-epoch one-cycle) through the trainer",
            ["data", "exit", "s to 94%", "epochs to 94%", "best top1", "wall s"],
            [
                [
                    cifar["data"],
                    cifar["exit"],
                    cifar["seconds_to_94"] or "not reached",
                    cifar["epochs_to_94"] or "-",
                    cifar["best_top1"],
                    cifar["wall_s"],
                ]
            ],
        )
    write_result(
        "gpu",
        {
            "gpu": gpu,
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "resnet50": results,
            "cifar10": cifar,
        },
    )


if __name__ == "__main__":
    main()
