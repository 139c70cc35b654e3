"""A detached run's records in its S3 prefix, and the guards read from them: stdlib only, the same code
on the instance (the supervisor writes them) and on the laptop (status, cost, report read them).

    runs/RUN/detached/settings.json   RunSettings, written once by `launch --detach`
    runs/RUN/detached/end.json        RunEnd, written once by whoever ends the run (supervisor, down)
    runs/RUN/ledger/0003.json         AttemptRecord of attempt 3, written only by attempt 3's instance

One object per attempt, so no two instances ever write the same key (the group has one member, and a
new one numbers itself max + 1; Capacity Rebalancing's replacement boots beside the attempt it
replaces, numbered after it, and trains only once that one stopped: `stopped_at`, or its end). A
record with no `end` is a live attempt, or one reclaimed before it could write its end: it ended at its
last heartbeat.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from . import billing

SUCCEEDED, FAILED, CANCELLED = "SUCCEEDED", "FAILED", "CANCELLED"
EXIT_DONE, EXIT_INTERRUPTED, EXIT_S3 = 0, 75, 69  # trainer/__init__.py's codes (the contract)


def settings_key(run_id: str) -> str:
    return f"runs/{run_id}/detached/settings.json"


def end_key(run_id: str) -> str:
    return f"runs/{run_id}/detached/end.json"


def ledger_prefix(run_id: str) -> str:
    return f"runs/{run_id}/ledger/"


def attempt_key(run_id: str, attempt: int) -> str:
    return f"{ledger_prefix(run_id)}{attempt:04d}.json"


def _load(cls: type, text: str) -> Any:
    """A record from its JSON, ignoring keys it does not know (a newer writer's)."""
    raw = json.loads(text)
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in raw.items() if k in names})


@dataclass(frozen=True)
class RunSettings:
    """What the supervisor needs to know of its run, decided on the laptop at launch."""

    run_id: str
    bucket: str
    region: str
    group: str  # the Auto Scaling group's name (cloud/aws/autoscaling.py: spotrain-RUN)
    instance_type: str
    trainer_args: list[str]  # after the python: ["-m", "trainer.launch", ..., "--", "--recipe", ...]
    zone_prices: dict[str, float]  # $/h per allowed zone, the plan's quotes
    extra_usd_per_hour: float = 0.0  # EBS (and its provisioned Iops/Throughput), billed with the instance
    max_attempts: int | None = None
    budget_usd: float | None = None
    failure_loop: int = 3  # this many consecutive attempts failed before a checkpoint end the run
    heartbeat_s: float = 30.0
    s3_restarts: int = 3  # exit 69 (S3 unreachable): the trainer started again this many times
    warm_modules: tuple[str, ...] = ()  # contract.WARM_MODULES: what a warm replacement imports first

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RunSettings:
        settings = _load(cls, text)
        return replace(settings, warm_modules=tuple(settings.warm_modules))


@dataclass(frozen=True)
class AttemptRecord:
    """One instance's life in a detached run, as that instance wrote it."""

    attempt: int
    instance_id: str
    instance_type: str
    zone: str
    lifecycle: str  # "spot" (IMDS instance-life-cycle), or what IMDS said
    start: float  # unix s, when the supervisor started (billing started a little earlier: boot)
    usd_per_hour: float  # the spot price in force in its zone at its start
    heartbeat: float  # unix s, rewritten while it lives
    end: float | None = None
    exit_code: int | None = None
    reason: str = ""
    checkpointed: bool = False  # it mirrored at least one checkpoint
    rebalance_at: float | None = None  # when its trainer saw a rebalance recommendation
    stopped_at: float | None = None  # its trainer stopped for a notice, the checkpoint mirrored: no more

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> AttemptRecord:
        return _load(cls, text)

    @property
    def ended_at(self) -> float:
        """Its end, or its last heartbeat when it was reclaimed before it could write one."""
        return self.end if self.end is not None else self.heartbeat

    @property
    def reclaimed_by_ec2(self) -> bool:
        """Stopped for a spot interruption (75), or gone without a word: EC2 ended it, not spotrain."""
        return self.exit_code in (EXIT_INTERRUPTED, None)

    @property
    def failed_before_checkpoint(self) -> bool:
        return (
            self.end is not None
            and self.exit_code not in (EXIT_DONE, EXIT_INTERRUPTED)
            and not self.checkpointed
        )

    def ended(self, t: float, code: int | None, reason: str, *, checkpointed: bool) -> AttemptRecord:
        return replace(self, end=t, heartbeat=t, exit_code=code, reason=reason, checkpointed=checkpointed)


@dataclass(frozen=True)
class RunEnd:
    """How a detached run ended, and why; written once."""

    state: str  # SUCCEEDED, FAILED or CANCELLED
    reason: str
    t: float
    attempt: int | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RunEnd:
        return _load(cls, text)


@dataclass(frozen=True)
class Ledger:
    """A run's attempts, first first, and its end if it has one."""

    attempts: tuple[AttemptRecord, ...] = ()
    end: RunEnd | None = None

    @property
    def next_attempt(self) -> int:
        return max((a.attempt for a in self.attempts), default=0) + 1


def spent_usd(
    records: tuple[AttemptRecord, ...], *, extra_usd_per_hour: float, now: float, live: int | None = None
) -> float:
    """Spot (at each attempt's price at start) + the instance's volumes, by the billing rules. The
    `live` attempt counts until `now`; any other without an end ended at its last heartbeat, by EC2."""
    total = 0.0
    for a in records:
        end = max(a.heartbeat, now) if a.attempt == live else a.ended_at
        reclaimed = a.reclaimed_by_ec2 and a.attempt != live
        total += billing.flat_spot_usd(a.usd_per_hour, start=a.start, end=end, reclaimed_by_ec2=reclaimed)
        total += extra_usd_per_hour * billing.billed_seconds(a.start, end) / 3600.0
    return total


def refusal(ledger: Ledger, settings: RunSettings, *, zone: str, now: float) -> str | None:
    """Why a new attempt must not start (the run ends FAILED with it), or None. The same limits as an
    attached run (spotrain/run_limits.py): --max-attempts counts the attempts made, --budget adds to
    what was spent the billed minimum of one more attempt; and the failure loop."""
    made = len(ledger.attempts)
    if settings.max_attempts is not None and made >= settings.max_attempts:
        return f"--max-attempts: {made} attempt{'s' * (made != 1)} made of at most {settings.max_attempts}"
    if settings.budget_usd is not None:
        spent = spent_usd(ledger.attempts, extra_usd_per_hour=settings.extra_usd_per_hour, now=now)
        rate = settings.zone_prices.get(zone, max(settings.zone_prices.values(), default=0.0))
        projected = (rate + settings.extra_usd_per_hour) * billing.MIN_BILLED_S / 3600.0
        if spent + projected > settings.budget_usd:
            return (
                f"--budget: spent ${spent:.4f} + projected ${projected:.4f} would pass the budget of "
                f"${settings.budget_usd:.4f}: launching no other attempt"
            )
    n = settings.failure_loop
    last = ledger.attempts[-n:]
    if n > 0 and len(last) == n and all(a.failed_before_checkpoint for a in last):
        codes = ", ".join(str(a.exit_code) for a in last)
        return (
            f"failure loop: the last {n} attempts failed before their first checkpoint (exit {codes}); "
            f"the last said: {last[-1].reason}"
        )
    return None
