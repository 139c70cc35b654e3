"""The trainer on its instance, mixed into the Orchestrator: its command line from the stored plan, its
events into the store (while a controller watches, or caught up for `status`), the attempt's progress
from them, how the trainer ended, and the dry-run's injected interruptions."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from spotrain.cloud import EndKind
from spotrain.config import PlanRecord
from spotrain.contract import TRAINER_DIR, WARM_MODULES, WORKDIR, run_paths, trainer_command, user_command
from spotrain.errors import SpotrainError
from spotrain.layout import crash_point
from spotrain.remote import (
    AlreadyRunning,
    RemoteCommandError,
    RemoteError,
    connect,
    follow_events,
    process_status,
    start_trainer,
    start_warm,
    stop,
)
from spotrain.spec_values import split_injection
from spotrain.store import TERMINAL

BOOT_DEADLINE_S = 900.0  # a bootstrap stage other than the data's (torch install, GPU check)
ENDING_WAIT_S, ENDING_POLL_S = 5.0, 0.05  # how long, how often the exit is asked after the last words
WARM_START_ENV = "SPOTRAIN_WARM_START"  # 0: no warm process, every trainer starts cold (bench baseline)


class TrainerWatch:
    """The Orchestrator's trainer half (it holds store, cloud, ssh, poll_s and on_event)."""

    def _paths(self, attempt, run_id: str) -> tuple[str, str]:
        """(run directory, bundle directory) on the attempt's instance."""
        return run_paths(self.cloud.workdir(attempt.instance_id), run_id)

    def _wait_ready(self, run_id: str, attempt, transport) -> dict[str, str]:
        """The bootstrap's ready marker (BOOT_DEADLINE_S from the last change of stage, longer in a data
        stage: cloud/aws/ready.py says why). Each stage it passes is a `stage` event, so the live view
        shows the data being fetched; a snapshot volume's read-ahead ends in a `data_ready` event."""

        def stage(name: str) -> None:
            self._event(run_id, "stage", attempt=attempt.number, stage=name)

        ready = self.cloud.wait_ready(
            transport, attempt.instance_id, deadline_s=BOOT_DEADLINE_S, on_stage=stage
        )
        if "SPOTRAIN_DATA_INIT_S" in ready:
            source, seconds = ready["SPOTRAIN_DATA_SOURCE"], float(ready["SPOTRAIN_DATA_INIT_S"])
            self._event(run_id, "data_ready", attempt=attempt.number, source=source, seconds=seconds)
        return ready

    def _sources(self, run) -> list[tuple[Path, str]]:
        """What the bundle holds: trainer/, each include under its name, the user's workdir as WORKDIR."""
        sources = [(TRAINER_DIR, "trainer"), *((Path(p), Path(p).name) for p in run.spec.includes)]
        return sources + ([(run.spec.workdir, WORKDIR)] if run.spec.run and run.spec.workdir else [])

    def _trainer_command(
        self, run, attempt, run_dir: str, ready: dict[str, str], *, instance_id: str | None = None, node=None
    ) -> list[str]:
        """The trainer's command on `instance_id` (default: the attempt's), as node `node` (a NodeRole) of
        a multi-node attempt when given."""
        instance_id = instance_id or attempt.instance_id
        if run.spec.run:  # the user's own command, under trainer/usercmd.py
            return user_command(
                run.spec,
                self._plan(run),
                run_id=run.run_id,
                run_dir=run_dir,
                bundle=self._paths(attempt, run.run_id)[1],
                bucket=self.cloud.bucket(),
                ready=ready,
                python=self.cloud.python(instance_id),
            )
        return trainer_command(
            run.spec,
            self._plan(run),
            run_id=run.run_id,
            run_dir=run_dir,
            bucket=self.cloud.bucket(),
            ready=ready,
            python=self.cloud.python(instance_id),
            every_gpu=self.cloud.name == "aws",
            node=node,
        )

    def _trainer_env(self, run, attempt, *, instance_id: str | None = None, node: int = 0) -> dict[str, str]:
        """The trainer's environment on `instance_id` (default: the attempt's), node `node`'s injection."""
        return {
            **self.cloud.instance_env(instance_id or attempt.instance_id),
            **self.store.run_env(run),
            **self._injection_env(run, attempt, node),
            # the mirror's S3 name for this attempt's logs: runs/RUN/attempts/N/, so a log the controller
            # could not keep is found there by its number
            "SPOTRAIN_ATTEMPT": str(attempt.number),
        }

    def _warm_up(self, run, attempt, transport, run_dir: str) -> None:
        """As soon as the instance answers (its bootstrap still running): a warm process that imports
        the trainer's heavy modules while the bootstrap finishes and the bundle syncs, in the cloud's
        python (the ready marker's, if different, starts cold). Best effort: any failure here leaves
        the ordinary cold start."""
        if os.environ.get(WARM_START_ENV, "1") == "0":
            return
        try:
            start_warm(
                transport,
                python=self.cloud.python(attempt.instance_id),
                modules=WARM_MODULES,
                run_dir=run_dir,
                env=self._trainer_env(run, attempt),
            )
        except AlreadyRunning:
            return  # an adopted instance's trainer, or the warm process a killed controller started
        except RemoteCommandError as err:
            self._event(
                run.run_id, "warning", attempt=attempt.number, message=f"no warm start: {err.message}"
            )

    def _start_trainer(
        self, run, attempt, transport, run_dir: str, bundle: str, ready: dict[str, str]
    ) -> None:
        """The trainer, in the warm process when one waits (remote/run.py's start_trainer), else cold;
        a `trainer_start` event says which, and why not warm."""
        started = start_trainer(
            transport,
            self._trainer_command(run, attempt, run_dir, ready),
            run_dir=run_dir,
            cwd=bundle,
            env=self._trainer_env(run, attempt),
        )
        self._event(
            run.run_id,
            "trainer_start",
            attempt=attempt.number,
            pid=started.pid,
            warm=started.warm,
            why=started.cold_why,
        )

    def _plan(self, run) -> PlanRecord:
        """The run's stored plan: what every attempt follows."""
        if run.plan is None:
            raise SpotrainError(
                f"run {run.run_id} has no stored plan, so nothing to launch it with",
                "start it again with `spotrain launch`",
            )
        return run.plan

    def _follow(self, run, attempt, transport, run_dir: str) -> None:
        ending = False  # the trainer's last words came (interruption, done, error): its exit is near

        def finished() -> bool:
            if self.store.get_run(run.run_id).state in TERMINAL:
                return True  # `spotrain down` ended the run from another process: stop watching
            if self._over_budget(run):
                stop(transport, run_dir, grace_s=60)
            # Once it said it stops, its exit is asked for every ENDING_POLL_S, not every poll_s: the
            # next attempt's request waits for it (a new event meanwhile is still read: follow's last read)
            deadline = time.monotonic() + (ENDING_WAIT_S if ending else 0.0)
            while (running := process_status(transport, run_dir).running) and time.monotonic() < deadline:
                time.sleep(ENDING_POLL_S)
            return not running

        path, offset = f"{run_dir}/events.jsonl", attempt.events_offset  # a restarted controller goes on
        for event in follow_events(transport, path, offset=offset, poll_s=self.poll_s, stop=finished):
            if event.kind == "malformed":
                continue
            ending = ending or event.kind in ("interruption", "done", "error")
            attempt = self._store_trainer_event(run, attempt, event)
            self._in_contact(run, attempt)
            crash_point("training")
            self.on_event({"run": run.run_id, "attempt": attempt.number, "source": "trainer", **event.data})

    def _store_trainer_event(self, run, attempt, event):
        """One trainer event into the store (with the offset to follow on from) and the attempt's
        progress; the watching controller and a catching-up `status` both pull through here."""
        self.store.add_trainer_events(run.run_id, attempt.number, [event.data], offset=event.end)
        return self._note_progress(run, attempt, event.data)

    def catch_up(self, run_id: str) -> str | None:
        """For a live run no controller watches (`spotrain status RUN`; the caller holds the run's
        lock): store the trainer's events written since the last pull, from its instance. Returns
        what the store cannot say yet (the trainer or its instance ended), or None. It changes no state
        and ends no attempt: that is the next controller's to decide (`spotrain resume`)."""
        run = self.store.get_run(run_id)
        attempt = self.store.live_attempt(run_id)
        if run.state in TERMINAL or attempt is None or attempt.instance_id is None:
            return None
        record = f"not yet recorded: `spotrain resume {run_id}` records it"
        try:
            status = self.cloud.describe(attempt.region, attempt.instance_id)
            transport = connect(self.cloud.target(status, ssh=self.ssh))
        except SpotrainError as err:
            return f"instance {attempt.instance_id} cannot be read ({err.message}); showing what was stored"
        run_dir, _ = self._paths(attempt, run_id)
        try:
            path = f"{run_dir}/events.jsonl"
            for event in follow_events(transport, path, offset=attempt.events_offset, stop=lambda: True):
                if event.kind != "malformed":
                    attempt = self._store_trainer_event(run, attempt, event)
            proc = process_status(transport, run_dir)
        except RemoteError as err:
            return f"instance {attempt.instance_id} cannot be read ({err.message}); showing what was stored"
        finally:
            transport.close()
        if status.end != EndKind.RUNNING:
            return f"instance {attempt.instance_id} ended ({status.reason_code}), {record}"
        if proc.state == "exited":
            return f"trainer exited {proc.exit_code}, {record}"
        if proc.state == "lost":
            return f"trainer is gone without an exit code, {record}"
        return None

    def _final_status(self, transport, run_dir: str, settle_s: float = 5.0):
        """How the trainer ended. Between its death and its supervisor writing the exit code it reads
        as "lost" for a moment: wait that out (a truly lost one stays lost and is returned so)."""
        deadline = time.monotonic() + settle_s
        proc = process_status(transport, run_dir)
        while proc.state == "lost" and time.monotonic() < deadline:
            time.sleep(0.05)
            proc = process_status(transport, run_dir)
        return proc

    def _note_progress(self, run, attempt, event: dict[str, Any]):
        """The attempt's resume point, first training step and last step; returns the updated record."""
        kind = event.get("kind")
        if kind == "start":
            return self.store.update_attempt(
                run.run_id, attempt.number, resumed_from_step=event.get("step", 0)
            )
        if kind == "step":
            fields = {"last_step": event["step"]}
            if attempt.training_started_at is None:
                fields["training_started_at"] = event["t"]
            return self.store.update_attempt(run.run_id, attempt.number, **fields)
        step = event.get("step")
        # `step` events come every --log-every steps only; the attempt's last step is where its trainer
        # saved and stopped (the step the next attempt resumes from), when that is later
        if (
            kind in ("checkpoint", "interruption", "done")
            and isinstance(step, int)
            and step > (attempt.last_step or 0)
        ):
            return self.store.update_attempt(run.run_id, attempt.number, last_step=step)
        return attempt

    def _injection(self, run, attempt, node: int = 0) -> str | None:
        """Dry-run: this attempt's --inject-interruption AT (one per attempt, in order), if any, when it
        is posted on node `node` (`AT@R`: node R; no @R: node 0), without its @R."""
        ats = run.spec.inject_interruptions
        if self.cloud.name != "dry-run" or attempt.number > len(ats):
            return None
        when, on = split_injection(ats[attempt.number - 1])
        return when if on == node else None

    def _injection_env(self, run, attempt, node: int = 0) -> dict[str, str]:
        at = self._injection(run, attempt, node)
        return self.cloud.injection_env(at) if at else {}

    def _inject(self, run, attempt, run_dir: str) -> None:
        """Dry-run: --inject-interruption AT, one per attempt in order, posted at that instance's IMDS."""
        at = self._injection(run, attempt)
        if at:
            self.cloud.schedule_interruption(attempt.instance_id, at, f"{run_dir}/events.jsonl")
            self._event(run.run_id, "inject", attempt=attempt.number, at=at)

    def _missed_injection(self, run, attempt) -> None:
        """A run asked to be interrupted in this attempt, and it finished first: say so, with where."""
        at = self._injection(run, attempt)
        if not at:
            return
        done = [e for e in self.store.events(run.run_id, kinds=["done"]) if e.attempt == attempt.number]
        where = ""
        if done:
            d = done[-1].data
            why = "reached its target" if d.get("reason") == "target" else f"ended ({d.get('reason')})"
            where = f" (the run {why} at step {d.get('step')}, epoch {d.get('epoch')})"
        self._event(
            run.run_id,
            "warning",
            attempt=attempt.number,
            message=f"the injected interruption {at} never came{where}",
        )
