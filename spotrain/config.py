"""What a run asks for (`RunSpec`) and what its plan decided (`PlanRecord`); settings.py: the state's place.

A spec is read from a YAML file (`-f run.yaml`), then `SPOTRAIN_<FIELD>` environment variables, then
command-line flags; the later source wins, field by field (`env` maps are merged key by key). Every bad
value raises SpotrainError naming the field, the value given and what is allowed, with a hint saying
where the value came from. No pydantic error escapes this module.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from spotrain import catalog
from spotrain.errors import SpotrainError
from spotrain.plan_record import PlanRecord  # noqa: F401 - re-exported: the plan beside the spec
from spotrain.settings import REGION_FORMAT
from spotrain.spec_sources import check_keys, from_env, read_spec_file
from spotrain.spec_values import (
    EXPECTED_COMMAND,
    check_command,
    check_injections,
    check_workdir,
    command_fields,
)
from spotrain.spec_values import bucket_ok as _bucket_ok
from spotrain.spec_values import did_you_mean as _did_you_mean
from spotrain.spec_values import seconds as _seconds
from spotrain.spec_values import show as _show

ENV_PREFIX = "SPOTRAIN_"
CHECKPOINT_BOUNDS_S = (60.0, 1800.0)  # Young's interval is clamped to [1 min, 30 min]

_REGION = REGION_FORMAT  # the one rule of what a region name looks like (settings.py)
_SNAPSHOT = re.compile(r"^snap-([0-9a-f]{8}|[0-9a-f]{17})$")
_AMI = re.compile(r"^ami-([0-9a-f]{8}|[0-9a-f]{17})$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_INTERRUPTION = re.compile(r"^(?:(\d+(?:\.\d+)?)(s|%)|step:([1-9]\d*))(?:@(\d+))?$")  # @R: node R

# These bounds refuse, before anything is launched, what would exhaust the instance (an environment
# larger than a command line may carry); spec_sources.py bounds the file itself.
ENV_MAX_VARIABLES = 256
ENV_MAX_BYTES = 64 << 10  # names and values together


# What each field accepts, in words: the end of every "is not allowed; expected ..." message.
EXPECTED: dict[str, str] = {
    "recipe": f"one of {', '.join(catalog.RECIPES)}",
    "instance": "an instance type in spotrain's catalog, e.g. p3.16xlarge",
    "nodes": "a whole number of instances, 1 or more",
    "regions": "AWS region names such as us-east-1, comma-separated",
    "zones": "availability zones of the chosen regions such as us-east-1a, or none for any",
    "max_price": "a positive spot price in dollars an hour",
    "budget": "a positive number of dollars",
    "max_attempts": "a whole number of attempts, 1 or more",
    "auto_resume": "true or false",
    "terminate_on_notice": "true or false",
    "max_wait": "how long --auto-resume waits for spot capacity: seconds, or e.g. 30m or 2h (more than 0)",
    "checkpoint_every": "'auto' or a number of seconds from 60 to 1800 (e.g. 300, 300s or 5m)",
    "data": "an S3 URI (s3://bucket/prefix) or an EBS snapshot id (snap-0123456789abcdef0)",
    "bucket": "an S3 bucket name: 3-63 lower-case letters, digits, dots and hyphens",
    "includes": "paths of files or directories to send to the instance (each lands beside trainer/ in the bundle, the trainer's working directory)",
    "env": "a map of environment variable names to values (KEY=VALUE,... from the environment)",
    "ami": "an AMI id: ami- and 8 or 17 hex digits",
    "ssh_cidr": "an IPv4 network such as 203.0.113.7/32",
    "target_acc": "an accuracy above 0 and at most 1, e.g. 0.94",
    "max_epochs": "a whole number of epochs, 1 or more",
    "seed": "a whole number, 0 or more",
    "dry_run": "true or false",
    "detach": "true or false",
    "inject_interruptions": "step:30 (after training step 30), 50% (of the schedule's steps) "
    "or 20s (after training started), each with @R for node R only (step:30@1; default node 0)",
    "inject_rebalances": "step:20 (a rebalance recommendation at training step 20) or 40% (of the steps)",
    "boot_delay_s": "a number of seconds, 0 or more",
    "wandb": "a W&B project name: 1-128 characters, none of / \\ # ? % :",
    "state_dir": "a directory path",
    "profile": "an AWS profile name",
    **EXPECTED_COMMAND,
}
_LIST_FIELDS = {"regions", "zones", "includes", "inject_interruptions", "inject_rebalances"}


def _region(v: str) -> str:
    if not _REGION.match(v):
        raise ValueError(EXPECTED["regions"])
    return v


def _interruption(v: str) -> str:
    m = _INTERRUPTION.match(v.strip().lower())
    if not m or (m.group(2) == "%" and not 0 < float(m.group(1)) < 100):
        raise ValueError(EXPECTED["inject_interruptions"] + "; a share must be above 0% and below 100%")
    return v.strip().lower()


Region = Annotated[str, AfterValidator(_region)]
Interruption = Annotated[str, AfterValidator(_interruption)]


class RunSpec(BaseModel):
    """One run's request. Validated on construction; the store reads a stored spec back as one
    (`store_records._spec`: keys it no longer has are dropped)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    recipe: str  # the trainer's recipe: digits | cifar10 | imagenet
    instance: str = ""  # EC2 type; empty means the recipe's default
    nodes: int = Field(1, ge=1)  # instances; each runs one torchrun with every GPU it has
    regions: list[Region] = Field(["us-east-1"], min_length=1)  # searched in order for the cheapest zone
    zones: list[str] = []  # empty: any zone of `regions`
    # $/h: never pay more than this for the spot price (finite: inf would be no limit at all)
    max_price: float | None = Field(None, gt=0, allow_inf_nan=False)
    budget: float | None = Field(None, gt=0, allow_inf_nan=False)  # $: stop when spent + projected passes it
    max_attempts: int = Field(10, ge=1)  # instances, interruptions included
    auto_resume: bool = False  # relaunch after an interruption without asking
    max_wait: float | None = None  # s: --auto-resume waits this long for capacity at most; None: no limit
    terminate_on_notice: bool = False  # end an interrupted instance at once, not leave it to EC2 (free)
    checkpoint_every: Literal["auto"] | float = "auto"  # seconds; auto = Young's interval
    data: str | None = None  # s3://bucket/prefix or snap-...
    bucket: str | None = None  # where checkpoints and logs go; None: the one `spotrain init` made
    includes: list[Path] = []  # extra files or directories synced to the instance
    env: dict[str, str] = {}  # set for the trainer; secret-looking values never reach the state DB
    ami: str | None = None  # overrides the Deep Learning AMI lookup
    ssh_cidr: str | None = None  # who may SSH in; None: this machine's public /32
    target_acc: float | None = Field(None, gt=0, le=1, allow_inf_nan=False)  # None: the recipe's target
    max_epochs: int | None = Field(None, ge=1)  # None: the recipe's schedule
    seed: int = Field(0, ge=0)
    dry_run: bool = False  # run on this machine against cloud/local/
    detach: bool = False  # `launch --detach`: hand the run to an Auto Scaling group and return
    inject_interruptions: list[Interruption] = []  # dry-run only: step:N, P% or Ns, one per attempt
    inject_rebalances: list[Interruption] = []  # detached dry-run only: step:N or P%, one per attempt
    boot_delay_s: float = Field(2.0, ge=0, allow_inf_nan=False)  # dry-run only: simulated boot time
    tensorboard: bool = False  # the trainer writes TensorBoard event files, mirrored to S3 with the logs
    wandb: str | None = Field(None, pattern=r"^[^/\\#?%:]{1,128}$")  # W&B project; the run id is W&B's id
    run: str | None = None  # the user's own command (recipe `command`); trainer/usercmd.py supervises it
    setup: str | None = None  # run once per instance before `run`
    workdir: Path | None = None  # synced beside trainer/ (filtered by .spotrainignore or .gitignore)

    @model_validator(mode="before")
    @classmethod
    def _instance_from_recipe(cls, values: Any) -> Any:
        values = command_fields(values) if isinstance(values, dict) else values
        if isinstance(values, dict) and not values.get("instance"):
            r = catalog.known_recipe(str(values.get("recipe")))
            if r is not None:
                values = {**values, "instance": r.instance}
        return values

    @field_validator(*_LIST_FIELDS, mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [p.strip() for p in v.split(",") if p.strip()]
        return list(v) if isinstance(v, tuple) else v

    @field_validator("recipe")
    @classmethod
    def _recipe(cls, v: str) -> str:
        if v not in catalog.RECIPES and v != catalog.COMMAND.name:
            raise ValueError(EXPECTED["recipe"] + _did_you_mean(v, catalog.RECIPES))
        return v

    @field_validator("instance")
    @classmethod
    def _instance(cls, v: str) -> str:
        if not v:  # only when the recipe is unknown too: that error says it all
            return v
        try:
            return catalog.instance_type(v).name
        except SpotrainError:
            raise ValueError(EXPECTED["instance"] + _did_you_mean(v, catalog.INSTANCE_TYPES)) from None

    @field_validator("checkpoint_every", mode="before")
    @classmethod
    def _checkpoint_every(cls, v: Any) -> Any:
        if v == "auto":
            return v
        seconds = _seconds(v)
        lo, hi = CHECKPOINT_BOUNDS_S
        if seconds is None or not lo <= seconds <= hi:
            raise ValueError(EXPECTED["checkpoint_every"])
        return seconds

    @field_validator("max_wait", mode="before")
    @classmethod
    def _max_wait(cls, v: Any) -> Any:
        seconds = None if v is None else _seconds(v)
        if v is not None and (seconds is None or not 0 < seconds < float("inf")):
            raise ValueError(EXPECTED["max_wait"])
        return seconds

    @field_validator("data")
    @classmethod
    def _data(cls, v: str | None) -> str | None:
        if v is None or _SNAPSHOT.match(v):
            return v
        if v.startswith("s3://") and _bucket_ok(v[5:].split("/", 1)[0]):
            return v
        raise ValueError(EXPECTED["data"])

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, v: str | None) -> str | None:
        if v is not None and not _bucket_ok(v):
            raise ValueError(EXPECTED["bucket"])
        return v

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, v: Any) -> Any:
        v = _env_map(v)
        if isinstance(v, list):
            raise ValueError(EXPECTED["env"])
        if isinstance(v, dict):  # YAML gives numbers and booleans; the trainer's environment wants text
            v = {k: str(x).lower() if isinstance(x, bool) else x for k, x in v.items()}
            v = {k: str(x) if isinstance(x, int | float) else x for k, x in v.items()}
            bad = [k for k in v if not (isinstance(k, str) and _ENV_NAME.match(k))]
            if bad:
                raise ValueError(
                    f"{EXPECTED['env']}; names such as LR or WANDB_PROJECT: a letter or _, then letters,"
                    f" digits or _ ({_show(bad[0])} is not one)"
                )
            _env_bounds(v)
        return v

    @field_validator("includes")
    @classmethod
    def _includes(cls, v: list[Path]) -> list[Path]:
        names = [Path(p).name for p in v]
        clash = sorted({n for n in names if names.count(n) > 1 or n in ("trainer", "workdir", "", ".", "..")})
        if clash:
            raise ValueError(
                f"{EXPECTED['includes']}, each under its own name, none named trainer or workdir: {clash}"
            )
        return v

    @field_validator("run", "setup")
    @classmethod
    def _command(cls, v: str | None, info: Any) -> str | None:
        return check_command(v, info.field_name)

    @field_validator("workdir")
    @classmethod
    def _workdir(cls, v: Path | None) -> Path | None:
        return check_workdir(v)

    @field_validator("ami")
    @classmethod
    def _ami(cls, v: str | None) -> str | None:
        if v is not None and not _AMI.match(v):
            raise ValueError(EXPECTED["ami"])
        return v

    @field_validator("ssh_cidr")
    @classmethod
    def _cidr(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            net = ipaddress.ip_network(v, strict=True)
        except ValueError:
            raise ValueError(EXPECTED["ssh_cidr"] + " (with no host bits set)") from None
        if net.version == 6:  # default VPCs give instances no IPv6 address: the rule would admit no one
            raise ValueError(EXPECTED["ssh_cidr"] + "; IPv6 cannot reach an instance in a default VPC")
        return str(net)

    @model_validator(mode="after")
    def _data_for_the_recipe(self) -> RunSpec:
        needs = catalog.DATA_LAYOUT.get(self.recipe)
        if needs and self.data is None:
            raise ValueError(
                f"data: missing; recipe {self.recipe} needs data: {EXPECTED['data']} holding {needs}"
            )
        return self

    @model_validator(mode="after")
    def _injections_for_a_command(self) -> RunSpec:
        check_injections(self.inject_interruptions, nodes=self.nodes, command=self.run is not None)
        return self

    @model_validator(mode="after")
    def _zones_in_regions(self) -> RunSpec:
        for z in self.zones:
            if not any(z.startswith(r) and z[len(r) :][:1].isalpha() for r in self.regions):
                raise ValueError(
                    f"zones: {_show(z)} is not allowed; expected a zone of {', '.join(self.regions)}"
                    f" such as {self.regions[0]}a"
                )
        return self


def load_spec(file: Path | None, flags: dict[str, Any], env: Mapping[str, str] = os.environ) -> RunSpec:
    """The run's spec: the YAML `file`, then `SPOTRAIN_<FIELD>` variables in `env`, then `flags`.

    A flag whose value is None (or an empty tuple, what click gives for an unused repeatable option)
    was not given. Relative `includes` in the file are relative to the file's directory.
    """
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    layers = [
        (read_spec_file(file) if file is not None else {}, f"in the file {file}"),
        (from_env(env, RunSpec.model_fields, ENV_PREFIX), "in the environment"),
        ({k: v for k, v in flags.items() if v is not None and v != ()}, "on the command line"),
    ]
    for values, where in layers:
        check_keys(values, where, list(RunSpec.model_fields))
        for key, value in values.items():
            if key == "env":
                value = _env_map(value)
                if isinstance(merged.get("env"), dict) and isinstance(value, dict):
                    value = {**merged["env"], **value}
            merged[key] = value
            var = f"{ENV_PREFIX}{key.upper()}"
            sources[key] = f"fix or unset {var}" if where == "in the environment" else f"fix it {where}"
    if merged.get("run") and not merged.get("workdir"):  # `launch -- CMD` syncs where it is run
        merged["workdir"] = str(Path.cwd())
    try:
        return RunSpec.model_validate(merged)
    except ValidationError as e:
        raise spec_error(e, sources, "spec") from None


def spec_error(e: ValidationError, sources: Mapping[str, str], what: str) -> SpotrainError:
    """One SpotrainError for every problem pydantic found, each naming the field, the value and the rule."""
    lines, hints = [], []
    for err in e.errors():
        loc = [str(p) for p in err["loc"]]
        field = loc[0] if loc else ""
        msg = str(err.get("msg", ""))
        if err["type"] == "missing":
            lines.append(f"{field}: missing; expected {EXPECTED.get(field, 'a value')}")
            hints.append(f"give {field} in the YAML file, as {ENV_PREFIX}{field.upper()} or as a flag")
            continue
        if err["type"] == "extra_forbidden":
            lines.append(f"unknown key '{field}' in the {what}")
            hints.append(f"known keys: {', '.join(RunSpec.model_fields)}")
            continue
        rule = msg.removeprefix("Value error, ") if err["type"] == "value_error" else EXPECTED.get(field, msg)
        if not field:  # a model-level rule: its message starts with the field's name
            lines.append(rule)
            field = rule.split(":", 1)[0]
            given = f"give {field} in the YAML file, as {ENV_PREFIX}{field.upper()} or as --{field}"
            hints.append(sources.get(field, given))
            continue
        lines.append(f"{field}: {_show(err.get('input'))} is not allowed; expected {rule}")
        hints.append(sources.get(field, f"fix {field}"))
    if not hints:
        hints.append("fix the values named above")
    return SpotrainError("\n".join(dict.fromkeys(lines)), hints[0])


def _env_map(v: Any) -> Any:
    """KEY=VALUE text (comma-separated) or items as a dict; anything else unchanged."""
    if isinstance(v, str):
        v = [p for p in v.split(",") if p.strip()]
    if isinstance(v, list | tuple):
        if not all(isinstance(p, str) and "=" in p for p in v):
            return list(v)
        return dict(p.strip().split("=", 1) for p in v)
    return v


def _env_bounds(env: Mapping[Any, Any]) -> None:
    """What the trainer's environment may hold: it travels on one command line to the instance (a
    Linux argument is at most 128 KiB) and is the environment of every process there."""
    if len(env) > ENV_MAX_VARIABLES:
        raise ValueError(
            f"at most {ENV_MAX_VARIABLES} variables (this one has {len(env)}); "
            "put settings in a file sent with includes"
        )
    for k, x in env.items():
        if isinstance(x, str) and "\x00" in x:
            raise ValueError(f"values with no NUL character ({k} has one)")
    size = sum(len(str(k).encode()) + len(str(x).encode(errors="replace")) + 2 for k, x in env.items())
    if size > ENV_MAX_BYTES:
        raise ValueError(
            f"at most {ENV_MAX_BYTES >> 10} KiB of names and values (this one has {size / 1024:.1f} KiB);"
            " put large values in a file sent with includes, or in S3, and pass its path"
        )
