"""Following train.log and events.jsonl: every line once, in order, across dropped connections."""

from __future__ import annotations

import random
import sys
import threading
import time
from pathlib import Path

from spotrain.remote import SSHTransport, Transport, follow, follow_events, process_status, start_detached
from spotrain.remote.logs import read_bytes

# Each line goes out in two writes, so the follower often sees a line without its newline yet.
# Before its last thousand lines the writer waits for a gate file (argv[3]), so a test can make sure
# lines are still coming whatever the speed of the machine.
WRITER = """
import os, sys, time
total, gate = int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None
with open(sys.argv[1], "ab", buffering=0) as f:
    for i in range(1, total + 1):
        if gate and i == total - 999:
            deadline = time.monotonic() + 120
            while not os.path.exists(gate) and time.monotonic() < deadline:
                time.sleep(0.01)
        f.write(b"line %05d" % i)
        f.write(b" ok\\n")
        if i % 25 == 0:
            time.sleep(0.01)
"""


def test_follow_loses_and_repeats_nothing_while_the_connection_is_cut_three_times(
    ssh: SSHTransport, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    log = run / "numbers.log"
    gate = tmp_path / "gate"
    run.mkdir()
    start_detached(
        ssh,
        [sys.executable, "-c", WRITER, str(log), "10000", str(gate)],
        run_dir=str(run),
        cwd=str(tmp_path),
    )

    cut_now = threading.Semaphore(0)
    cuts: list[int] = []

    def cutter() -> None:
        rng = random.Random(5)
        for _ in range(3):
            cut_now.acquire()
            time.sleep(rng.uniform(0, 0.03))  # lands mid-poll or between polls
            while (sock := ssh.sock) is None:
                time.sleep(0.001)
            sock.shutdown(2)
            cuts.append(len(seen))
        gate.touch()  # the last thousand lines come only after the third cut

    seen: list[str] = []
    threading.Thread(target=cutter, daemon=True).start()
    writer_done = lambda: not process_status(ssh, str(run)).running  # noqa: E731
    for line in follow(ssh, str(log), poll_s=0.05, stop=writer_done):
        seen.append(line.text)
        if len(seen) in (2000, 5000, 8000):
            cut_now.release()

    assert seen == [f"line {i:05d} ok" for i in range(1, 10_001)]
    assert len(cuts) == 3 and all(n <= 9000 for n in cuts), cuts  # all three while lines were coming
    assert ssh.connects == 4  # the first session and one per cut


def test_follow_events_parses_lines_and_ends_with_the_process(transport: Transport, tmp_path: Path) -> None:
    run = tmp_path / "run"
    script = (
        "import json, sys, time\n"
        "f = open(sys.argv[1], 'a')\n"
        "for i, kind in enumerate(['start', 'step', 'eval', 'done']):\n"
        "    f.write(json.dumps({'t': 1700000000 + i, 'kind': kind, 'step': i}) + '\\n'); f.flush()\n"
        "    time.sleep(0.05)\n"
        "f.write('not json\\n'); f.write('{\"kind\": \"tail\"}')  # the last line has no newline\n"
    )
    events_path = str(run / "events.jsonl")
    start_detached(
        transport, [sys.executable, "-c", script, events_path], run_dir=str(run), cwd=str(tmp_path)
    )
    done = lambda: not process_status(transport, str(run)).running  # noqa: E731
    events = list(follow_events(transport, events_path, poll_s=0.05, stop=done))
    assert [e.kind for e in events] == ["start", "step", "eval", "done", "malformed", "tail"]
    assert events[2].t == 1700000002 and events[2].data["step"] == 2
    assert events[4].data == {"line": "not json"}
    assert events[0].offset == 0 and all(a.end == b.offset for a, b in zip(events, events[1:], strict=False))


def test_follow_resumes_from_an_offset(transport: Transport, tmp_path: Path) -> None:
    path = tmp_path / "train.log"
    path.write_text("one\ntwo\nthree\n")
    lines = list(follow(transport, str(path), stop=lambda: True))
    assert [line.text for line in lines] == ["one", "two", "three"]
    path.write_text(path.read_text() + "four\n")
    resumed = list(follow(transport, str(path), offset=lines[-1].end, stop=lambda: True))
    assert [(line.text, line.offset) for line in resumed] == [("four", 14)]


def test_a_missing_file_reads_as_empty_and_long_lines_arrive_whole(
    transport: Transport, tmp_path: Path
) -> None:
    assert read_bytes(transport, str(tmp_path / "not-yet.log"), 0, 100) == b""
    path = tmp_path / "long.log"
    long_line = "x" * 3_000_000
    path.write_text(long_line + "\nend\n")
    texts = [line.text for line in follow(transport, str(path), stop=lambda: True)]
    assert texts == [long_line, "end"]
