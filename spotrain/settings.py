"""Where this machine keeps spotrain's state, and which AWS profile it uses: `SPOTRAIN_HOME`,
`SPOTRAIN_PROFILE`, or what a command line overrides."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from spotrain.config import spec_error


class Settings(BaseModel):
    """Where this machine keeps spotrain's state, and which AWS profile it uses."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    state_dir: Path = Field(default=Path("~/.spotrain"), validate_default=True)  # $SPOTRAIN_HOME
    profile: str | None = None  # $SPOTRAIN_PROFILE; None: boto3's default credential chain

    @field_validator("state_dir")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        return v.expanduser().absolute()

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
    try:
        return Settings.model_validate(values)
    except ValidationError as e:
        raise spec_error(e, {}, "Settings") from None
