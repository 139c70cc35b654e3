"""Whether a run goes on, mixed into the Orchestrator: --max-attempts and --budget (spent + projected,
decided once and recorded as a `budget` event), and how long --auto-resume waits for spot capacity
(--max-wait)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from spotrain.cloud import NoCapacity
from spotrain.errors import SpotrainError
from spotrain.store import TERMINAL, RunState

T = TypeVar("T")
# --auto-resume's pauses between launches refused for capacity: doubling from the first, at most the
# last (a spot vCPU quota counts an interrupted instance for minutes; capacity returns in minutes to hours)
WAIT_FIRST_S, WAIT_MOST_S = 30.0, 600.0


class RunLimits:
    """The Orchestrator's limits half (it holds store, and the _transition and _event these call)."""

    def _may_resume(self, run, *, automatic: bool) -> bool:
        """Whether an interrupted run goes on. Past --budget (stopped mid-attempt, or another attempt
        would pass it) or --max-attempts it ends FAILED with a reason naming the limit and the numbers;
        its instances are already terminated (the attempt ended). `spotrain resume` raises that reason."""
        spec, attempts = run.spec, self.store.attempts(run.run_id)
        limit = spec.max_attempts
        stopped = bool(self.store.events(run.run_id, kinds=["budget"]))  # by the budget, mid-attempt
        why, verb = None, "not resumed"
        if stopped or len(attempts) < limit and self._over_budget(run):
            event = self.store.events(run.run_id, kinds=["budget"])[-1]
            why = f"--budget: {event.data['message']}"
            if stopped and attempts and event.attempt == attempts[-1].number:
                self.store.update_attempt(run.run_id, attempts[-1].number, end_reason="budget")
                why, verb = f"{why}; its instance {attempts[-1].instance_id} is terminated", "stopped"
        elif len(attempts) >= limit:
            why = (
                f"--max-attempts: {len(attempts)} attempt{'s' * (len(attempts) != 1)} made of at most "
                f"{limit}; instance {attempts[-1].instance_id} is terminated"
            )
        if why is not None:
            self._transition(run.run_id, RunState.FAILED, f"{verb}: {why}")
            if not automatic:
                raise SpotrainError(
                    f"run {run.run_id} cannot resume: {why}",
                    "start a new run with a higher limit: `spotrain launch --budget ... --max-attempts ...`",
                )
            return True  # drive() sees FAILED and returns
        return not automatic or spec.auto_resume

    def _over_budget(self, run) -> bool:
        """Spent + projected $ past --budget. Decided once: the first time, a `budget` event records the
        numbers (for the messages), and from then on the run stays over budget. While an attempt lives
        this waits for its first step, since only a training trainer turns SIGTERM into a checkpoint;
        between attempts, another attempt's billed minimum counts as projected."""
        budget = run.spec.budget
        if not budget:
            return False
        if self.store.events(run.run_id, kinds=["budget"]):
            return True
        live = self.store.live_attempt(run.run_id)
        if live is not None and live.training_started_at is None:
            return False
        from spotrain.cost import spent_and_projected

        spent, projected = spent_and_projected(self.store, run.run_id, next_attempt=live is None)
        if spent + projected <= budget:
            return False
        what = f"stopping attempt {live.number} at a checkpoint" if live else "launching no other instance"
        self._event(
            run.run_id,
            "budget",
            attempt=live.number if live else None,
            budget=budget,
            spent=round(spent, 6),
            projected=round(projected, 6),
            message=f"spent ${spent:.4f} + projected ${projected:.4f} would pass the budget of "
            f"${budget:.4f}: {what}",
        )
        return True

    def _launch_waiting(self, run, launch: Callable[[], T]) -> T | None:
        """`launch()`, and with --auto-resume, again after a pause each time it is refused for capacity
        (NoCapacity), doubling the pause, until --max-wait has passed (then the refusal stands, saying
        how long it waited). Each pause is a `waiting` event. None when the run ended meanwhile
        (`spotrain down`). Waiting costs nothing: no instance runs."""
        first, pause = None, WAIT_FIRST_S
        while True:
            try:
                return launch()
            except NoCapacity as err:
                if not run.spec.auto_resume:
                    raise
                first = self.clock() if first is None else first
                waited, limit = self.clock() - first, run.spec.max_wait
                if limit is not None and waited + pause > limit:
                    raise NoCapacity(
                        f"{err.message}\n--max-wait {limit:g} s: waited {waited:.0f} s for capacity, "
                        "not waiting longer",
                        "`spotrain resume RUN` tries again; or allow more zones or regions, or another --instance",
                    ) from None
                self._event(
                    run.run_id,
                    "waiting",
                    message=f"no spot capacity now ({err.message.splitlines()[0]}); trying again in "
                    f"{pause:.0f} s (waited {waited:.0f} s"
                    + (f" of --max-wait {limit:g} s)" if limit is not None else ", no --max-wait)"),
                )
                if not self._pause(run.run_id, pause):
                    return None
                pause = min(pause * 2, WAIT_MOST_S)

    def _pause(self, run_id: str, seconds: float) -> bool:
        """Sleep `seconds` in short slices; False as soon as the run has ended (another process's down)."""
        end = self.clock() + seconds
        while self.clock() < end:
            if self.store.get_run(run_id).state in TERMINAL:
                return False
            self.sleep(min(1.0, end - self.clock()))
        return self.store.get_run(run_id).state not in TERMINAL
