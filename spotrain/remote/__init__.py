"""The remote layer: reach an instance over SSH (or this machine, for the dry-run), sync the bundle,
run the trainer detached, follow its log. paramiko only; nothing here prints or exits.

    transport = connect(SSHTarget(host, "ubuntu", key_file, instance_id))   # or LocalTarget(dir, python)
    sync(transport, [(Path("trainer"), "trainer"), (spec, "spec.yaml")], "~/spotrain/bundle")
    start_detached(transport, ["python3", "-m", "trainer.train", "--run-dir", run], run_dir=run, cwd=bundle)
    for event in follow_events(transport, f"{run}/events.jsonl", stop=lambda: not process_status(...).running):
        ...
"""

from spotrain.remote.base import (
    AuthFailed,
    ConnectionLost,
    ExecResult,
    HostKeyMismatch,
    RemoteCommandError,
    RemoteError,
    RemoteTimeout,
    Transport,
    Unreachable,
)
from spotrain.remote.local import LocalTransport
from spotrain.remote.logs import Event, LogLine, follow, follow_events, read_tail
from spotrain.remote.reach import connect
from spotrain.remote.run import (
    AlreadyRunning,
    DetachedProcess,
    ProcessStatus,
    process_status,
    start_detached,
    start_trainer,
    start_warm,
    stop,
)
from spotrain.remote.ssh import HostKeyPins, RetryPolicy, SSHTransport, load_key
from spotrain.remote.sync import DEFAULT_EXCLUDES, SyncResult, sync
from spotrain.targets import LocalTarget, SSHTarget, Target

__all__ = [
    "DEFAULT_EXCLUDES",
    "AlreadyRunning",
    "AuthFailed",
    "ConnectionLost",
    "DetachedProcess",
    "Event",
    "ExecResult",
    "HostKeyMismatch",
    "HostKeyPins",
    "LocalTarget",
    "LocalTransport",
    "LogLine",
    "ProcessStatus",
    "RemoteCommandError",
    "RemoteError",
    "RemoteTimeout",
    "RetryPolicy",
    "SSHTarget",
    "SSHTransport",
    "SyncResult",
    "Target",
    "Transport",
    "Unreachable",
    "connect",
    "follow",
    "follow_events",
    "load_key",
    "process_status",
    "read_tail",
    "start_detached",
    "start_trainer",
    "start_warm",
    "stop",
    "sync",
]
