"""What the full trainer costs over a bare loop: the digits model, same data, same process.

The trainer runs with everything on: events and train.log, the IMDSv2 watcher (polling a local fake
IMDS every 5 s, as on EC2), checkpoints every 10 s, the sampler and the per-step schedule. Its training
steps/s (epoch time, eval excluded: the bare loop does no eval) is compared with a plain loop over the
same batches. Rounds alternate bare/trainer and the medians are compared, because this machine is noisy.
Goal: overhead <= 5%. Also: the time the loop is blocked per checkpoint against one step's time.

    .venv/bin/python bench/trainer_overhead.py [--seconds 25] [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import torch  # noqa: E402
from torch import nn  # noqa: E402

from bench.common import print_table, write_result  # noqa: E402
from trainer.data import ResumableSampler, load_digits  # noqa: E402
from trainer.events import read_events  # noqa: E402
from trainer.net import build_optimizer  # noqa: E402
from trainer.recipes import get_recipe  # noqa: E402
from trainer.train import main as train_main  # noqa: E402
from trainer.util import code_hash  # noqa: E402


def bare_loop(seconds: float, seed: int = 0) -> tuple[int, float]:
    """(steps, seconds): the digits CNN trained by the plainest loop over the same batches."""
    recipe = get_recipe("digits")
    torch.manual_seed(seed)
    data = load_digits()
    model = recipe.model(data.num_classes)
    optimizer = build_optimizer(recipe, model)
    criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    sampler = ResumableSampler(len(data.train), 1, 0, seed)
    steps, epoch, t0 = 0, 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for x, y in data.train.loader(
            sampler.batches(epoch, 64), seed=seed, epoch=epoch, first=0, rank=0, size=8, train=True
        ):
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            steps += 1
        epoch += 1
    return steps, time.perf_counter() - t0


def full_trainer(seconds: float, epochs_per_second: float, imds_url: str) -> dict:
    """Run the real trainer in this process for about `seconds` of training; read its events."""
    run = Path(tempfile.mkdtemp(prefix="overhead-")) / "run"
    epochs = max(2, int(seconds * epochs_per_second))
    os.environ["SPOTRAIN_IMDS_URL"] = imds_url  # polled every 5 s, as AWS advises
    argv = [
        "--recipe",
        "digits",
        "--run-dir",
        str(run),
        "--max-epochs",
        str(epochs),
        "--target-acc",
        "1.0",
        "--checkpoint-every",
        "10",
        "--eval-every",  # only at the end: reaching 100% held out must not stop the run early
        "0",
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        code = train_main(argv)
    assert code == 0, code
    events = read_events(run / "events.jsonl")
    epoch_s = sum(e["seconds"] for e in events if e["kind"] == "epoch")
    steps = max(e["step"] for e in events if e["kind"] == "epoch")
    blocked = [e["blocked_s"] for e in events if e["kind"] == "checkpoint" and e.get("where") == "local"]
    evals = [e["t"] for e in events if e["kind"] == "eval"]
    return {
        "steps": steps,
        "train_s": epoch_s,
        "blocked_s": blocked[:-1],  # the last is the final, blocking save
        "wall_s": events[-1]["t"] - events[0]["t"],
        "evals": len(evals),
    }


def fake_imds() -> str:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_PUT(self) -> None:
            self.send_response(200), self.send_header("Content-Length", "1"), self.end_headers()
            self.wfile.write(b"t")

        def do_GET(self) -> None:
            self.send_response(404), self.send_header("Content-Length", "0"), self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=25.0, help="training time per run")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    imds = fake_imds()
    # The trainer flushes denormal floats on a CPU (they made every op ~3x slower late in the schedule);
    # the setting is per process, so set it for the bare loop too, or the comparison measures denormals.
    torch.set_flush_denormal(True)
    bare_loop(1.0)  # warm-up: first-call costs (allocator, MKL-DNN kernels) go to neither side
    steps, secs = bare_loop(2.0)
    epochs_per_second = (steps / secs) / (1437 // 64)
    bare, full = [], []
    for _ in range(args.rounds):
        s, t = bare_loop(args.seconds)
        bare.append(s / t)
        result = full_trainer(args.seconds, epochs_per_second, imds)
        full.append(result)
    full_rates = [r["steps"] / r["train_s"] for r in full]
    bare_med, full_med = statistics.median(bare), statistics.median(full_rates)
    overhead = 1 - full_med / bare_med
    blocked = [b for r in full for b in r["blocked_s"]]
    step_s = 1 / full_med
    rows = [["bare loop", bare_med, "", ""], ["full trainer", full_med, f"{overhead:+.1%}", "<= 5%"]]
    print_table(
        "digits steps/s (median of rounds; trainer: epoch time, eval excluded)",
        ["loop", "steps/s", "overhead", "goal"],
        rows,
    )
    print_table(
        "checkpoint every 10 s: time the loop was blocked",
        ["checkpoints", "blocked median s", "blocked max s", "one step s", "median blocked / step"],
        [
            [
                len(blocked),
                statistics.median(blocked) if blocked else float("nan"),
                max(blocked) if blocked else float("nan"),
                step_s,
                (statistics.median(blocked) / step_s) if blocked else float("nan"),
            ]
        ],
    )
    write_result(
        "trainer_overhead",
        {
            "code_hash": code_hash(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "seconds_per_run": args.seconds,
            "rounds": args.rounds,
            "bare_steps_per_s": bare,
            "trainer_steps_per_s": full_rates,
            "trainer_runs": full,
            "bare_median": bare_med,
            "trainer_median": full_med,
            "overhead": overhead,
            "goal_overhead": 0.05,
            "checkpoint_blocked_s": blocked,
            "step_s": step_s,
            "blocked_over_step": (statistics.median(blocked) / step_s) if blocked else None,
            "met": overhead <= 0.05,
        },
    )


if __name__ == "__main__":
    main()
