"""Where this machine keeps spotrain's state, and which AWS profile and region it uses: `SPOTRAIN_HOME`,
`SPOTRAIN_PROFILE`, or what the command line chose (`--profile`, `--region`: `chosen`)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from spotrain.config import Region, spec_error

# What the running command's --profile and --region chose (cli_options.aws_options sets it): every
# load_settings() of the command sees it, so no library path that opens a cloud can miss it.
_CHOSEN: ContextVar[tuple[tuple[str, str], ...]] = ContextVar("spotrain_chosen", default=())


class Settings(BaseModel):
    """Where this machine keeps spotrain's state, and which AWS profile it uses."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    state_dir: Path = Field(default=Path("~/.spotrain"), validate_default=True)  # $SPOTRAIN_HOME
    profile: str | None = None  # --profile, else $SPOTRAIN_PROFILE; None: boto3's default credential chain
    region: Region | None = None  # --region of a one-region command; None: the profile's, or the run's

    @field_validator("state_dir")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        return v.expanduser().absolute()

    def allows(self, regions: list[str]) -> bool:
        """Whether a run launched in `regions` is one --region chose (every run when none was given)."""
        return self.region is None or self.region in regions

    def dry_run_dir(self) -> Path:
        """The dry-run's own state directory, so that it never mixes with real runs."""
        return self.state_dir / "dry-run"

    def state_dir_for(self, dry_run: bool) -> Path:
        """The state directory a run uses: the dry-run's own for a dry-run, else `state_dir`."""
        return self.dry_run_dir() if dry_run else self.state_dir


@contextlib.contextmanager
def chosen(*, profile: str | None = None, region: str | None = None) -> Iterator[None]:
    """The command line's --profile and --region (None: not given) for what runs inside."""
    given = {k: v for k, v in {"profile": profile, "region": region}.items() if v is not None}
    token = _CHOSEN.set(tuple({**dict(_CHOSEN.get()), **given}.items()))
    try:
        yield
    finally:
        _CHOSEN.reset(token)


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment (`SPOTRAIN_HOME`, `SPOTRAIN_PROFILE`), then what the command
    line chose (`chosen`); non-None overrides win."""
    values: dict[str, Any] = {}
    if os.environ.get("SPOTRAIN_HOME"):
        values["state_dir"] = os.environ["SPOTRAIN_HOME"]
    if os.environ.get("SPOTRAIN_PROFILE"):
        values["profile"] = os.environ["SPOTRAIN_PROFILE"]
    values.update(dict(_CHOSEN.get()))
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings.model_validate(values)
    except ValidationError as e:
        raise spec_error(
            e, {"region": "fix --region (`aws ec2 describe-regions` lists them)"}, "Settings"
        ) from None
