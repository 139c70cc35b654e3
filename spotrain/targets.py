"""How to reach an instance: the plain records a cloud returns and `spotrain.remote.connect` opens.

Neither `cloud/` nor `remote/` owns them, so those two never import each other:

    target = cloud.target(status, ssh=True)   # an SSHTarget (AWS, or the dry-run's local sshd) or a LocalTarget
    transport = connect(target)               # spotrain.remote: an SSH session, or commands run in a directory
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class SSHTarget:
    """Where to connect and as whom. `instance_id` names the host key pin."""

    host: str
    user: str
    key_file: Path
    instance_id: str
    port: int = 22
    python: str = "python3"  # the interpreter that runs the trainer there
    state_dir: str | None = None  # where the remote layer keeps its process records; None: its default

    def __str__(self) -> str:
        return f"{self.user}@{self.host}:{self.port} ({self.instance_id})"


@dataclass(frozen=True)
class LocalTarget:
    """A dry-run instance: a directory on this machine; commands run there with HOME set to it."""

    home: Path
    python: str
    env: Mapping[str, str] = field(default_factory=dict)  # on top of this process's environment
    unset: tuple[str, ...] = ()  # names in this process's environment the instance does not inherit


Target = SSHTarget | LocalTarget
