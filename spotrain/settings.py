"""Where this machine keeps spotrain's state, and which AWS profile and region it uses: `SPOTRAIN_HOME`,
`SPOTRAIN_PROFILE`, or what the command line chose (`--profile`, `--region`: `chosen`).

A plain frozen dataclass, not a pydantic model: every command reads it, `spotrain status` included,
and importing pydantic alone costs more than that whole command may take (bench/status.py).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from spotrain.errors import SpotrainError

# What an AWS region name looks like (us-east-1, us-gov-west-1, eu-central-2): the one rule, which
# config.py's RunSpec also applies to --region.
REGION_FORMAT = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d$")

# What the running command's --profile and --region chose (cli_options.aws_options sets it): every
# load_settings() of the command sees it, so no library path that opens a cloud can miss it.
_CHOSEN: ContextVar[tuple[tuple[str, str], ...]] = ContextVar("spotrain_chosen", default=())


@dataclass(frozen=True)
class Settings:
    """Where this machine keeps spotrain's state, and which AWS profile and region it uses."""

    state_dir: Path = field(default=Path("~/.spotrain"))  # $SPOTRAIN_HOME; made absolute
    profile: str | None = None  # --profile, else $SPOTRAIN_PROFILE; None: boto3's default credential chain
    region: str | None = None  # --region of a one-region command; None: the profile's, or the run's

    def __post_init__(self) -> None:
        if not isinstance(self.state_dir, str | os.PathLike) or not str(self.state_dir):
            raise SpotrainError(
                f"state_dir {self.state_dir!r} is not a directory path",
                "set SPOTRAIN_HOME to a directory, e.g. ~/.spotrain",
            )
        if self.profile is not None and not isinstance(self.profile, str):
            raise SpotrainError(f"profile {self.profile!r} is not a profile name", "set SPOTRAIN_PROFILE")
        if self.region is not None and not (
            isinstance(self.region, str) and REGION_FORMAT.match(self.region)
        ):
            raise SpotrainError(
                f"--region {self.region!r} is not an AWS region name; expected e.g. us-east-1",
                "fix --region (`aws ec2 describe-regions` lists them)",
            )
        object.__setattr__(self, "state_dir", Path(self.state_dir).expanduser().absolute())

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
    unknown = sorted(set(values) - {f.name for f in fields(Settings)})
    if unknown:
        raise SpotrainError(
            f"unknown setting {', '.join(unknown)}", "the settings are state_dir, profile and region"
        )
    return Settings(**values)
