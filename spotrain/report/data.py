"""What the report draws, read from the store once: the run's bill and the trainer's events.

Every dollar and second comes from the bill (cost.run_usage priced by cost.price, as `spotrain cost`
prices it), never from a second pricing here. A run that cannot be priced yet keeps its usage (lives,
price history) for the figures that need no dollars, and says so in `missing`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from spotrain import cost
from spotrain.errors import SpotrainError
from spotrain.store import AttemptRecord, EventRecord, RunRecord, Store

TRAINER_KINDS = ("start", "step", "eval", "checkpoint", "interruption", "done")


@dataclass(frozen=True)
class RunData:
    run: RunRecord
    usage: cost.RunUsage  # what the run used, as the bill has it
    bill: cost.Bill | None  # None when the run cannot be priced yet (no spot price in force)
    events: dict[str, list[EventRecord]]  # the trainer's events by kind, in time order
    now: float
    missing: dict[str, list[str]] = field(default_factory=dict)  # section -> what it lacks

    @property
    def attempts(self) -> tuple[AttemptRecord, ...]:
        return self.usage.records

    @property
    def origin(self) -> float:
        """Unix s: the first instance's start (the bill's zero for time to target)."""
        return self.usage.origin

    @property
    def end(self) -> float:
        """Unix s: the last attempt's end, or now."""
        return self.usage.end

    @property
    def curves(self) -> cost.Curves:
        return self.usage.curves

    def attempt_costs(self) -> list[cost.AttemptCost | None]:
        """Each attempt's cost from the bill, in the order of `attempts`; None for each without one."""
        return list(self.bill.cost.attempts) if self.bill else [None] * len(self.attempts)

    def spent_at(self, t: float) -> float:
        """Spot + EBS dollars spent by second `t`, by the bill's prices (only when there is a bill)."""
        if self.bill is None:
            raise LookupError("the run cannot be priced yet")
        return self.bill.spent_at(t)

    def note(self, section: str, what: str) -> None:
        self.missing.setdefault(section, []).append(what)


def load(store: Store, run_id: str, *, now: float | None = None) -> RunData:
    """The run's record, bill and trainer events; what cannot be had is noted as missing."""
    now = now or time.time()
    usage = cost.run_usage(store, run_id, now=now)
    events: dict[str, list[EventRecord]] = {k: [] for k in TRAINER_KINDS}
    for e in store.events(run_id, kinds=TRAINER_KINDS):
        if e.source == "trainer":
            events[e.kind].append(e)
    missing: dict[str, list[str]] = {}
    try:
        bill = cost.price(usage)
    except SpotrainError as err:
        bill = None
        missing["summary"] = [f"cost: {err.message}"]
    return RunData(store.get_run(run_id), usage, bill, events, now, missing)
