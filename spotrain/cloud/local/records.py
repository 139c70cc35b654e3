"""What the dry-run keeps on disk: a JSON record beside each instance directory (`instances/ID.json`:
zone, type, tags, IMDS port, notice, state), so that a LocalCloud started after a killed controller
brings back every instance not yet ended, and a `spotrain down` in another process is seen; and the
moto port (`cloud.json`), taken again when free so a trainer that kept running reaches it."""

from __future__ import annotations

import contextlib
import json
import socket
from dataclasses import asdict, dataclass
from pathlib import Path

from spotrain.errors import SpotrainError


@dataclass(frozen=True)
class InstanceRecord:
    """What a restarted controller needs to bring a dry-run instance back."""

    instance_id: str
    region: str
    zone: str
    instance_type: str
    tags: dict[str, str]
    imds_port: int
    state: str = "running"  # or "terminated"
    notice: dict[str, str] | None = None  # the IMDS instance-action once posted


class InstanceFiles:
    """The records in `directory`, one file per instance, each replaced whole on save."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)

    def _path(self, instance_id: str) -> Path:
        return self.directory / f"{instance_id}.json"

    def save(self, record: InstanceRecord) -> None:
        path = self._path(record.instance_id)
        tmp = path.with_suffix(".json.part")
        tmp.write_text(json.dumps(asdict(record), indent=1))
        tmp.replace(path)

    def load(self, instance_id: str) -> InstanceRecord:
        path = self._path(instance_id)
        if not path.exists():
            raise SpotrainError(
                f"no dry-run instance {instance_id} in {self.directory}", "see `spotrain status`"
            )
        return InstanceRecord(**json.loads(path.read_text()))

    def running(self) -> list[InstanceRecord]:
        """The instances not yet ended, in id order."""
        records = [InstanceRecord(**json.loads(p.read_text())) for p in sorted(self.directory.glob("*.json"))]
        return [r for r in records if r.state == "running"]

    def ended(self, instance_id: str) -> bool:
        """Another process's dry-run cloud (a `spotrain down`) terminated it: its record says so."""
        try:
            return json.loads(self._path(instance_id).read_text())["state"] == "terminated"
        except (OSError, ValueError, KeyError):
            return False


def saved_moto_port(state_dir: Path) -> int:
    """The moto port of the last LocalCloud on this state directory if it is free, else 0 (any)."""
    with contextlib.suppress(OSError, ValueError, KeyError):
        port = int(json.loads((state_dir / "cloud.json").read_text())["moto_port"])
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
        return port
    return 0


def save_moto_port(state_dir: Path, port: int) -> None:
    (state_dir / "cloud.json").write_text(json.dumps({"moto_port": port}))
