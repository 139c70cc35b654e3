"""Where this machine keeps spotrain's state, and which AWS profile it uses: `SPOTRAIN_HOME`,
`SPOTRAIN_PROFILE`, or what a command line overrides.

A plain frozen dataclass, not a pydantic model: every command reads it, `spotrain status` included,
and importing pydantic alone costs more than that whole command may take (bench/status.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from spotrain.errors import SpotrainError


@dataclass(frozen=True)
class Settings:
    """Where this machine keeps spotrain's state, and which AWS profile it uses."""

    state_dir: Path = field(default=Path("~/.spotrain"))  # $SPOTRAIN_HOME; made absolute
    profile: str | None = None  # $SPOTRAIN_PROFILE; None: boto3's default credential chain

    def __post_init__(self) -> None:
        if not isinstance(self.state_dir, str | os.PathLike) or not str(self.state_dir):
            raise SpotrainError(
                f"state_dir {self.state_dir!r} is not a directory path",
                "set SPOTRAIN_HOME to a directory, e.g. ~/.spotrain",
            )
        if self.profile is not None and not isinstance(self.profile, str):
            raise SpotrainError(f"profile {self.profile!r} is not a profile name", "set SPOTRAIN_PROFILE")
        object.__setattr__(self, "state_dir", Path(self.state_dir).expanduser().absolute())

    def dry_run_dir(self) -> Path:
        """The dry-run's own state directory, so that it never mixes with real runs."""
        return self.state_dir / "dry-run"

    def state_dir_for(self, dry_run: bool) -> Path:
        """The state directory a run uses: the dry-run's own for a dry-run, else `state_dir`."""
        return self.dry_run_dir() if dry_run else self.state_dir


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment (`SPOTRAIN_HOME`, `SPOTRAIN_PROFILE`); non-None overrides win."""
    values: dict[str, Any] = {}
    if os.environ.get("SPOTRAIN_HOME"):
        values["state_dir"] = os.environ["SPOTRAIN_HOME"]
    if os.environ.get("SPOTRAIN_PROFILE"):
        values["profile"] = os.environ["SPOTRAIN_PROFILE"]
    values.update({k: v for k, v in overrides.items() if v is not None})
    unknown = sorted(set(values) - {f.name for f in fields(Settings)})
    if unknown:
        raise SpotrainError(f"unknown setting {', '.join(unknown)}", "the settings are state_dir and profile")
    return Settings(**values)
