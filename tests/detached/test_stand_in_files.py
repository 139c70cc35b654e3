"""What the dry-run's AWS stand-in and the calls that join it share on disk: its endpoint only while its
process lives, one lease per joining process (a dead one's swept), the injections per attempt."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from spotrain.cloud.local import stand_in_files as files


def publish_as(state_dir: Path, pid: int) -> None:
    d = files.stand_in_dir(state_dir)
    d.mkdir(parents=True, exist_ok=True)
    (d / files.STATE_FILE).write_text(json.dumps({"pid": pid, "endpoint": "http://127.0.0.1:5999"}))


def test_the_endpoint_is_given_only_while_the_stand_in_lives_and_never_to_itself(tmp_path: Path) -> None:
    assert files.live_endpoint(tmp_path) is None and files.take_lease(tmp_path) is None  # none: no trace
    assert not files.stand_in_dir(tmp_path).exists()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        publish_as(tmp_path, sleeper.pid)
        assert files.live_endpoint(tmp_path) == "http://127.0.0.1:5999"
        assert files.stand_in_pid(tmp_path) == sleeper.pid
    finally:
        sleeper.kill()
        sleeper.wait()
    assert files.live_endpoint(tmp_path) is None and files.stand_in_pid(tmp_path) is None
    publish_as(tmp_path, os.getpid())
    assert files.live_endpoint(tmp_path) is None  # the stand-in's own LocalCloud starts the moto


def test_a_lease_holds_the_stand_in_until_dropped_and_a_dead_process_lease_is_swept(tmp_path: Path) -> None:
    publish_as(tmp_path, os.getpid() + 1)
    lease = files.take_lease(tmp_path)
    assert lease is not None and lease.name == str(os.getpid())
    assert files.leased(tmp_path) is False  # this process's own lease does not count for itself
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (lease.parent / str(dead.pid)).touch()
    assert files.leased(tmp_path) is False and not (lease.parent / str(dead.pid)).exists()
    files.drop_lease(lease)
    assert not lease.exists()


def test_injections_are_kept_per_run_one_entry_per_attempt(tmp_path: Path) -> None:
    assert files.injections(tmp_path, "r1") == {"interruptions": [], "rebalances": []}
    files.write_injections(tmp_path, "r1", ["step:30"], ["step:20"])
    assert files.injections(tmp_path, "r1") == {"interruptions": ["step:30"], "rebalances": ["step:20"]}
    assert files.injections(tmp_path, "r2") == {"interruptions": [], "rebalances": []}
