"""The controller killed (as by SIGKILL) in each state, then `spotrain resume RUN`: the run finishes, and
at no moment does the run have two live instances."""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path

import pytest

from spotrain.store import Store

from . import cli

POINTS = ["requesting", "launched", "provisioning", "syncing", "training", "interrupted"]


def spotrain(*args: str, home: Path, crash_at: str | None = None) -> subprocess.CompletedProcess:
    return cli.spotrain(*args, home=home, env={"SPOTRAIN_CRASH_AT": crash_at} if crash_at else None)


def live_instances(home: Path, run_id: str) -> list[str]:
    """The run's dry-run instances that are running now (the dry-run cloud's own records)."""
    found = []
    for path in (home / "dry-run" / "instances").glob("*.json"):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # being rewritten this instant
        if record["tags"].get("spotrain:run") == run_id and record["state"] == "running":
            found.append(record["instance_id"])
    return found


class Watch:
    """Samples the run's live instances every 20 ms while the resume runs: the most ever seen at once."""

    def __init__(self, home: Path, run_id: str) -> None:
        self.most, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._run, args=(home, run_id), daemon=True)
        self._thread.start()

    def _run(self, home: Path, run_id: str) -> None:
        while not self._stop.wait(0.02):
            self.most = max(self.most, len(live_instances(home, run_id)))

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.most


@pytest.mark.parametrize("point", POINTS)
def test_killed_controller_resumes_and_finishes(point: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    killed = spotrain(
        *cli.DEMO,
        home=home,
        crash_at=point,
    )
    assert killed.returncode == -9, killed.stdout[-2000:] + killed.stderr[-2000:]
    with Store.open(home / "dry-run") as store:
        (run,) = store.list_runs()
    assert len(live_instances(home, run.run_id)) <= 1

    watch = Watch(home, run.run_id)
    resumed = spotrain("resume", run.run_id, home=home)
    most = watch.stop()
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "succeeded" in resumed.stdout
    assert most <= 1, f"{most} live instances of the run at once"
    assert live_instances(home, run.run_id) == []
    with Store.open(home / "dry-run") as store:
        attempts = store.attempts(run.run_id)
        best = max(e.data["top1"] for e in store.events(run.run_id, kinds=["eval"]))
        launched = {p.stem for p in (home / "dry-run" / "instances").glob("*.json")}
        cleanups = store.events(run.run_id, kinds=["cleanup"])  # the ended run swept its security group
    assert cleanups and any(d.startswith("sg-") for d in cleanups[-1].data["deleted"]), cleanups
    assert not cleanups[-1].data["failed"]
    assert best >= 0.98
    assert {a.instance_id for a in attempts} == launched  # every instance launched is an attempt of the run
    assert all(a.ended_at is not None for a in attempts)
    down = spotrain("down", run.run_id, "-y", home=home)
    assert down.returncode == 0, down.stderr
