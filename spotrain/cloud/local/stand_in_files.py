"""What the dry-run's AWS stand-in (stand_in.py) and the calls that use it share on disk, in STATE_DIR/stand-in/:
its pid and moto endpoint (`stand-in.json`, there while it serves), one lease per process that joined its
moto (`leases/PID`: it does not exit under a call), each detached run's injected interruptions, and what
it did to each run's instances (`RUN.events.jsonl`: Capacity Rebalancing's replacement, the notice)."""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

STATE_FILE = "stand-in.json"


def stand_in_dir(state_dir: Path) -> Path:
    return Path(state_dir) / "stand-in"


def write_injections(
    state_dir: Path, run_id: str, interruptions: list[str], rebalances: list[str] | None = None
) -> None:
    """What `--inject-interruption` and `--inject-rebalance` ask of a detached dry-run run, one entry
    per attempt each, for the stand-in."""
    d = stand_in_dir(state_dir)
    d.mkdir(parents=True, exist_ok=True)
    wanted = {
        "interruptions": [str(i) for i in interruptions],
        "rebalances": [str(i) for i in rebalances or []],
    }
    (d / f"{run_id}.inject.json").write_text(json.dumps(wanted))


def injections(state_dir: Path, run_id: str) -> dict[str, list[str]]:
    with contextlib.suppress(OSError, ValueError):
        wanted = json.loads((stand_in_dir(state_dir) / f"{run_id}.inject.json").read_text())
        return {k: list(wanted.get(k, [])) for k in ("interruptions", "rebalances")}
    return {"interruptions": [], "rebalances": []}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    with contextlib.suppress(OSError):  # a zombie (exited, not yet reaped by its parent) is not alive
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    return True


def live_endpoint(state_dir: Path) -> str | None:
    """The moto endpoint of the stand-in of `state_dir` while it lives (never this process's own)."""
    try:
        state = json.loads((stand_in_dir(state_dir) / STATE_FILE).read_text())
        pid, endpoint = int(state["pid"]), str(state["endpoint"])
    except (OSError, ValueError, KeyError):
        return None
    return endpoint if pid != os.getpid() and alive(pid) else None


def take_lease(state_dir: Path) -> Path | None:
    """This process uses the stand-in (a LocalCloud that joins it): it does not exit meanwhile. None
    when no stand-in serves (nothing written: an attached dry-run leaves no trace of it)."""
    if not (stand_in_dir(state_dir) / STATE_FILE).exists():
        return None
    d = stand_in_dir(state_dir) / "leases"
    d.mkdir(parents=True, exist_ok=True)
    path = d / str(os.getpid())
    path.touch()
    return path


def drop_lease(lease: Path | None) -> None:
    if lease is not None:
        lease.unlink(missing_ok=True)


def leased(state_dir: Path) -> bool:
    """Some live process other than this one holds a lease (a dead one's is swept)."""
    d = stand_in_dir(state_dir) / "leases"
    for path in d.glob("*") if d.exists() else []:
        with contextlib.suppress(ValueError):
            pid = int(path.name)
            if pid != os.getpid() and alive(pid):
                return True
        path.unlink(missing_ok=True)
    return False


def stand_in_pid(state_dir: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError, KeyError):
        pid = int(json.loads((stand_in_dir(state_dir) / STATE_FILE).read_text())["pid"])
        return pid if alive(pid) else None
    return None


def publish(d: Path, endpoint: str) -> None:
    tmp = d / f"{STATE_FILE}.part"
    tmp.write_text(json.dumps({"pid": os.getpid(), "endpoint": endpoint}))
    tmp.replace(d / STATE_FILE)


def record(state_dir: Path, run_id: str, kind: str, **fields: object) -> None:
    """One thing the stand-in did to a run's instances, appended to `RUN.events.jsonl`."""
    d = stand_in_dir(state_dir)
    d.mkdir(parents=True, exist_ok=True)
    with (d / f"{run_id}.events.jsonl").open("a") as f:
        f.write(json.dumps({"t": time.time(), "kind": kind, **fields}) + "\n")
        f.flush()


def recorded(state_dir: Path, run_id: str) -> list[dict[str, object]]:
    path = stand_in_dir(state_dir) / f"{run_id}.events.jsonl"
    out = []
    for line in path.read_text().splitlines() if path.exists() else []:
        with contextlib.suppress(ValueError):
            out.append(json.loads(line))
    return out
