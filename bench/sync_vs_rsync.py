"""spotrain's sync against `rsync -a --delete -e ssh`, to the same local sshd, on the same tree.

Three cases from issue 5, on a generated tree of 2,000 files and 50 MB of random (incompressible)
bytes: the first sync into an empty directory, a sync with nothing changed, and a sync after one file
changed. Each tool opens its own SSH connection per sync (rsync cannot do otherwise), so spotrain's
time includes its connect; the time on an already open connection, which is how the orchestrator
uses it, is shown too. Median of REPEATS runs; the target is spotrain within 1.5x of rsync's time.

    .venv/bin/python bench/sync_vs_rsync.py          # table on stdout, JSON in bench/results/
"""

from __future__ import annotations

import json
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "remote"))
sys.path.insert(0, str(REPO))

from sshd_server import Sshd  # noqa: E402

FILES, TOTAL_BYTES, TARGET = 2000, 50_000_000, 1.5
REPEATS = int(os.environ.get("BENCH_REPEATS", "5"))
OUT = REPO / "bench" / "results" / "sync_vs_rsync.json"


def make_tree(root: Path, seed: int = 0) -> list[Path]:
    rng = random.Random(seed)
    weights = [rng.lognormvariate(0, 1) for _ in range(FILES)]
    scale = TOTAL_BYTES / sum(weights)
    paths = []
    for i, w in enumerate(weights):
        path = root / f"d{i % 23}" / f"e{i % 7}" / f"file{i:05d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(max(1, int(w * scale))))
        paths.append(path)
    return paths


class Rsync:
    def __init__(self, server: Sshd) -> None:
        self.server = server
        self.ssh = (
            f"ssh -p {server.port} -i {server.client_key} -o BatchMode=yes -o LogLevel=ERROR "
            "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
        )

    def sync(self, src: Path, dst: Path) -> tuple[float, int]:
        start = time.perf_counter()
        out = subprocess.run(
            [
                "rsync",
                "-a",
                "--delete",
                "--stats",
                "-e",
                self.ssh,
                f"{src}/",
                f"{self.server.user}@127.0.0.1:{dst}/",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        seconds = time.perf_counter() - start
        return seconds, int(
            re.search(r"Total bytes sent: ([\d,.]+)", out).group(1).replace(",", "").replace(".", "")
        )


class Spotrain:
    def __init__(self, server: Sshd, work: Path) -> None:
        from spotrain.remote import RetryPolicy, SSHTarget

        self.target = SSHTarget("127.0.0.1", server.user, server.client_key, "i-bench", server.port)
        self.retry = RetryPolicy(deadline_s=10)
        self.state_dir = str(work / "remote-state")

    def sync(self, src: Path, dst: Path) -> tuple[float, int, float]:
        """(seconds with connect, bytes sent, seconds of the sync alone on the open connection)."""
        from spotrain.remote import connect, sync

        start = time.perf_counter()
        transport = connect(self.target, retry=self.retry, python=sys.executable, state_dir=self.state_dir)
        result = sync(transport, src, str(dst))
        seconds = time.perf_counter() - start
        transport.close()
        return seconds, result.bytes_sent, result.seconds


def run_cases(work: Path, server: Sshd) -> dict:
    src = work / "src"
    paths = make_tree(src)
    rsync, ours = Rsync(server), Spotrain(server, work)
    rng = random.Random(1)
    samples: dict[str, dict[str, list]] = {
        case: {
            "rsync_s": [],
            "rsync_bytes": [],
            "spotrain_s": [],
            "spotrain_bytes": [],
            "spotrain_connected_s": [],
        }
        for case in ("first", "no_change", "one_file")
    }

    def record(case: str, r: tuple[float, int], s: tuple[float, int, float]) -> None:
        samples[case]["rsync_s"].append(r[0])
        samples[case]["rsync_bytes"].append(r[1])
        samples[case]["spotrain_s"].append(s[0])
        samples[case]["spotrain_bytes"].append(s[1])
        samples[case]["spotrain_connected_s"].append(s[2])

    for rep in range(REPEATS):
        r_dst, s_dst = work / f"rsync-{rep}", work / f"spotrain-{rep}"
        shutil.rmtree(Path(os.environ["SPOTRAIN_HOME"]) / "sync-cache", ignore_errors=True)  # cold hashes
        record("first", rsync.sync(src, r_dst), ours.sync(src, s_dst))
        record("no_change", rsync.sync(src, r_dst), ours.sync(src, s_dst))
        victim = rng.choice(paths)
        victim.write_bytes(rng.randbytes(victim.stat().st_size))
        record("one_file", rsync.sync(src, r_dst), ours.sync(src, s_dst))
        shutil.rmtree(r_dst)
        shutil.rmtree(s_dst)
    return samples


def summarize(samples: dict) -> list[dict]:
    rows = []
    for case, s in samples.items():
        ours, theirs = statistics.median(s["spotrain_s"]), statistics.median(s["rsync_s"])
        rows.append(
            {
                "case": case,
                "spotrain_s": round(ours, 4),
                "spotrain_connected_s": round(statistics.median(s["spotrain_connected_s"]), 4),
                "rsync_s": round(theirs, 4),
                "ratio": round(ours / theirs, 3),
                "spotrain_bytes": int(statistics.median(s["spotrain_bytes"])),
                "rsync_bytes": int(statistics.median(s["rsync_bytes"])),
                "within_target": ours / theirs <= TARGET,
            }
        )
    return rows


def print_table(rows: list[dict]) -> None:
    head = f"{'case':<10} {'spotrain s':>10} {'(open conn)':>11} {'rsync s':>8} {'ratio':>6} {'spotrain B':>11} {'rsync B':>10}  target"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['case']:<10} {r['spotrain_s']:>10.3f} {r['spotrain_connected_s']:>11.3f} {r['rsync_s']:>8.3f} "
            f"{r['ratio']:>6.2f} {r['spotrain_bytes']:>11,} {r['rsync_bytes']:>10,}  "
            f"{'ok' if r['within_target'] else 'MISSED'} (<= {TARGET}x)"
        )


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="spotrain-bench-") as tmp:
        work = Path(tmp)
        os.environ["SPOTRAIN_HOME"] = str(work / "home")
        server = Sshd(work / "sshd").start()
        try:
            samples = run_cases(work, server)
        finally:
            server.stop()
    rows = summarize(samples)
    print(f"sync of {FILES} files, {TOTAL_BYTES / 1e6:.0f} MB, to sshd on 127.0.0.1; median of {REPEATS}")
    print_table(rows)
    rsync_version = subprocess.run(["rsync", "--version"], capture_output=True, text=True).stdout.split("\n")[
        0
    ]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        json.dumps(
            {
                "benchmark": "sync_vs_rsync",
                "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "tree": {"files": FILES, "bytes": TOTAL_BYTES, "content": "random bytes"},
                "repeats": REPEATS,
                "target_ratio": TARGET,
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "rsync": rsync_version,
                },
                "rows": rows,
                "samples": samples,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {OUT.relative_to(REPO)}")


if __name__ == "__main__":
    main()
