"""The run's state machine: REQUESTING -> PROVISIONING -> TRAINING -> (INTERRUPTED -> REQUESTING ...) ->
SUCCEEDED | FAILED | CANCELLED.

Each state has one step function; `drive` runs them until the run ends or waits for the user. Every
step is idempotent: the controller can be killed at any line and started again (`spotrain resume`),
and the step it was in runs again, after reconciling with what the cloud says (instances found by
their `spotrain:run` tag): a live instance is adopted, never a second one started. Every transition is
written to the store (with its event) before the action it announces.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spotrain import catalog
from spotrain.cloud import EndKind
from spotrain.cloud.aws.attempt import AttemptRequest
from spotrain.cloud.aws.instances import LaunchSpec
from spotrain.errors import SpotrainError
from spotrain.layout import DATA_DIR, TRAINER_DIR, crash_point, log_path, run_lock, run_paths, trainer_argv
from spotrain.remote import (
    ConnectionLost,
    RemoteError,
    Unreachable,
    connect,
    follow,
    follow_events,
    process_status,
    read_tail,
    start_detached,
    stop,
    sync,
)
from spotrain.store import TERMINAL, RunState, Store

EXIT_DONE, EXIT_UNAVAILABLE, EXIT_INTERRUPTED = 0, 69, 75  # the trainer's contract (trainer/__init__.py)
MAX_RESTARTS = 3  # an attempt starts a trainer that could not reach S3 again at most this often
# Lost contact (a dropped connection, no SSH session within the transport's deadline) is retried, with
# a growing pause, until it has failed this many times in a row AND for this long; then the attempt
# ends (its instance terminated) and the run waits, INTERRUPTED. Both, so that neither a burst of quick
# failures nor one slow SSH deadline (300 s, remote/ssh.py) ends an attempt that a laptop's sleep broke.
LOST_CONTACT_TRIES, LOST_CONTACT_S, LOST_CONTACT_PAUSE_S = 10, 900.0, 30.0
TRANSIENT = (ConnectionLost, Unreachable)  # the remote layer's "try again" errors (remote/base.py)
CANCELLED_BY_DOWN = "cancelled by `spotrain down`"
OnEvent = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Outcome:
    run_id: str
    state: RunState
    reason: str


class Orchestrator:
    """Drives runs against one cloud (AWS or the dry-run's), recording everything in the store."""

    def __init__(
        self,
        store: Store,
        cloud,
        state_dir: Path,
        *,
        on_event: OnEvent | None = None,
        ssh: bool = False,
        poll_s: float = 0.5,
    ) -> None:
        self.store, self.cloud, self.state_dir = store, cloud, Path(state_dir)
        self.on_event = on_event or (lambda event: None)
        self.ssh, self.poll_s = ssh, poll_s
        self.lost_contact_tries, self.lost_contact_s = LOST_CONTACT_TRIES, LOST_CONTACT_S
        self._lost: dict[tuple[str, int], tuple[float, int]] = {}  # (run, attempt) -> (since, failures)

    # ------------------------------------------------------------------------------ public verbs
    def drive(self, run_id: str) -> Outcome:
        """Run the state machine until the run ends, or is interrupted without --auto-resume."""
        with run_lock(self.state_dir, run_id):
            while True:
                run = self.store.get_run(run_id)
                if run.state in TERMINAL:
                    return Outcome(run_id, run.state, run.end_reason)
                if run.state == RunState.INTERRUPTED:
                    if not self._may_resume(run, automatic=True):
                        return Outcome(run_id, run.state, "interrupted: `spotrain resume` continues it")
                    run = self.store.get_run(run_id)  # a limit (attempts, budget) may have ended it
                    if run.state in TERMINAL:
                        continue
                try:
                    STEPS[run.state](self, run)
                except Exception as err:
                    if run.state == RunState.REQUESTING:
                        self._refused(run, err)
                    raise

    def resume(self, run_id: str) -> Outcome:
        run = self.store.get_run(run_id)
        if run.state in TERMINAL:
            raise SpotrainError(
                f"run {run_id} has already ended ({run.state.value}: {run.end_reason})",
                "start a new run with `spotrain launch`",
            )
        if run.state == RunState.INTERRUPTED:
            self._may_resume(run, automatic=False)  # raises when attempts or budget are spent
            self._transition(run_id, RunState.REQUESTING, "resumed by the user")
        return self.drive(run_id)

    def down(self, run_id: str) -> list[str]:
        """Terminate and remove everything the run owns; the run ends CANCELLED (if it had not ended)."""
        run = self.store.get_run(run_id)
        if run.state not in TERMINAL:
            self._transition(run_id, RunState.CANCELLED, CANCELLED_BY_DOWN, clean_up=False)
        live = self.store.live_attempt(run_id)
        if live is not None:
            self.store.update_attempt(run_id, live.number, ended_at=time.time(), end_reason="user")
            self._record_prices(live.region, live.instance_type, live.zone, live.requested_at, time.time())
        result = self.cloud.sweep(run_id)
        return [*result.terminated, *result.deleted]

    # ------------------------------------------------------------------------------ the steps
    def _request(self, run) -> None:
        """REQUESTING: adopt a live instance of the run, or launch one (cheapest zone, the zone that
        just interrupted us last)."""
        if self._adopt(run):
            return
        spec, attempts = run.spec, self.store.attempts(run.run_id)
        itype = catalog.instance_type(spec["instance"])
        demote = [a.zone for a in attempts if a.end_reason == EndKind.SPOT_INTERRUPTION.value][-1:]
        number = len(attempts) + 1
        launch = LaunchSpec(
            run_id=run.run_id,
            attempt_id=f"{run.run_id}-{number}",
            owner=self._owner(),
            instance_type=itype.name,
            root_gb=catalog.recipe(spec["recipe"]).root_volume_gb,
            data_snapshot_id=spec.get("data") if str(spec.get("data") or "").startswith("snap-") else None,
            max_price=spec.get("max_price"),
            user_data=self.cloud.user_data(spec),
            instance_profile=self.cloud.instance_profile(),
        )
        self._event(run.run_id, "launch", attempt=number, instance_type=itype.name, demoted=demote)
        crash_point("requesting")
        started = self.cloud.start_attempt(
            AttemptRequest(
                spec=launch,
                regions=spec["regions"],
                state_dir=self.state_dir,
                ssh_cidr=spec.get("ssh_cidr"),
                ami=spec.get("ami"),
                demote_zones=demote,
                zones=spec.get("zones") or (),
            )
        )
        crash_point("launched")  # an instance exists that the store does not know yet
        inst = started.instance
        self.store.add_attempt(
            run.run_id,
            instance_id=inst.instance_id,
            region=inst.region,
            zone=inst.zone,
            instance_type=inst.instance_type,
            spot_usd_per_hour=inst.spot_usd_per_hour,
            requested_at=time.time(),
        )
        self._transition(
            run.run_id,
            RunState.PROVISIONING,
            f"{inst.instance_id} in {inst.zone} at ${inst.spot_usd_per_hour or 0:.3f}/h; "
            f"image {started.image.image_id}: {started.image.reason}",
        )

    def _refused(self, run, err: Exception) -> None:
        """The launch was refused (no capacity, a bad value the plan could not see): the run does not
        stay REQUESTING. Before any attempt it ends FAILED; after one it waits, INTERRUPTED, for
        `spotrain resume` (its checkpoints are safe in S3)."""
        why = err.message if isinstance(err, SpotrainError) else f"{type(err).__name__}: {err}"
        if self.store.attempts(run.run_id):
            self._transition(run.run_id, RunState.INTERRUPTED, f"no instance launched: {why}")
        else:
            self._transition(run.run_id, RunState.FAILED, f"the launch was refused: {why}")

    def _provision(self, run) -> None:
        """PROVISIONING: wait for the instance, sync the bundle, start the trainer detached."""
        attempt = self.store.live_attempt(run.run_id)
        crash_point("provisioning")
        if attempt is None:
            return self._transition(run.run_id, RunState.REQUESTING, "no live attempt to provision")
        status = self.cloud.wait_running(attempt.region, attempt.instance_id, deadline_s=900)
        if status.end != EndKind.RUNNING:
            return self._ended(
                run, attempt, status.end, f"the instance ended while booting: {status.reason_code}"
            )
        if self.store.get_run(run.run_id).state in TERMINAL:
            return  # `spotrain down` ended the run while it booted: start nothing on it
        if attempt.started_at is None:
            self.store.update_attempt(run.run_id, attempt.number, started_at=time.time())
        run_dir, bundle, transport = *self._paths(attempt, run.run_id), None
        try:  # the transport too: an instance that cannot be reached or logged into ends its attempt
            transport = connect(self.cloud.target(status, ssh=self.ssh))
            if process_status(transport, run_dir).state != "running":  # an adopted instance may be training
                ready = self.cloud.wait_ready(transport, deadline_s=900)
                result = sync(transport, [(TRAINER_DIR, "trainer")], bundle)
                self._event(
                    run.run_id,
                    "sync",
                    attempt=attempt.number,
                    files=result.files_sent,
                    bytes=result.bytes_sent,
                    seconds=round(result.seconds, 3),
                )
                crash_point("syncing")
                start_detached(
                    transport,
                    self._trainer_argv(run, attempt, run_dir, ready),
                    run_dir=run_dir,
                    cwd=bundle,
                    env={
                        **self.cloud.instance_env(attempt.instance_id),
                        **self.store.run_env(run),
                        **self._injection_env(run, attempt),
                        # the mirror's S3 name for this attempt's logs: runs/RUN/attempts/N/, so a log
                        # the controller could not keep is found there by its number
                        "SPOTRAIN_ATTEMPT": str(attempt.number),
                    },
                )
                self._inject(run, attempt, run_dir)
                crash_point("started")  # the trainer runs; the store does not say TRAINING yet
        except TRANSIENT as err:
            return self._lost_contact(run, attempt, err)
        except SpotrainError as err:  # AuthFailed, the bootstrap's failure marker, a failed start...
            return self._remote_failed(run, attempt, err)
        finally:
            if transport is not None:
                transport.close()
        self._in_contact(run, attempt)
        self._transition(run.run_id, RunState.TRAINING, f"trainer started on {attempt.instance_id}")

    def _train(self, run) -> None:
        """TRAINING: follow the trainer's events into the store until it exits; then decide."""
        attempt = self.store.live_attempt(run.run_id)
        if attempt is None:
            return self._transition(run.run_id, RunState.REQUESTING, "no live attempt")
        status = self.cloud.describe(attempt.region, attempt.instance_id)
        if status.end != EndKind.RUNNING:
            return self._ended(run, attempt, status.end, status.reason_code)
        run_dir, transport = self._paths(attempt, run.run_id)[0], None
        try:
            transport = connect(self.cloud.target(status, ssh=self.ssh))
            self._follow(run, attempt, transport, run_dir)
            if self.store.get_run(run.run_id).state in TERMINAL:
                return self._keep_log(run, attempt, transport, run_dir)  # down's word stands
            proc = self._final_status(transport, run_dir)
            self._keep_log(run, attempt, transport, run_dir)
            if proc.exit_code not in (EXIT_DONE, EXIT_INTERRUPTED):
                tail = "\n".join(read_tail(transport, f"{run_dir}/train.log", 15))
        except TRANSIENT as err:
            return self._lost_contact(run, attempt, err)
        except SpotrainError as err:
            return self._remote_failed(run, attempt, err)
        finally:
            if transport is not None:
                transport.close()
        if proc.exit_code == EXIT_DONE:
            self._missed_injection(run, attempt)
            self._finish_attempt(run, attempt, "finished", proc.exit_code)
            return self._transition(run.run_id, RunState.SUCCEEDED, "the trainer finished")
        if proc.exit_code == EXIT_INTERRUPTED:
            return self._ended(
                run,
                attempt,
                EndKind.SPOT_INTERRUPTION,
                "the trainer saved and stopped for a notice",
                exit_code=proc.exit_code,
            )
        status = self.cloud.describe(attempt.region, attempt.instance_id)
        if proc.exit_code == EXIT_UNAVAILABLE and status.end == EndKind.RUNNING:
            return self._restart(run, attempt, tail)
        if status.end != EndKind.RUNNING:  # the instance was taken (no notice honoured): it took the trainer
            return self._ended(
                run,
                attempt,
                status.end,
                f"the instance ended ({status.reason_code})",
                exit_code=proc.exit_code,
            )
        self._finish_attempt(run, attempt, "error", proc.exit_code)
        self._transition(run.run_id, RunState.FAILED, f"the trainer exited {proc.exit_code}:\n{tail}")

    def _restart(self, run, attempt, tail: str) -> None:
        """The trainer could not reach S3 (exit 69): the infrastructure, not the run. Start it again on
        the same instance a few times; past that the attempt ends and the run waits, INTERRUPTED."""
        done = [e for e in self.store.events(run.run_id, kinds=["restart"]) if e.attempt == attempt.number]
        last = tail.strip().splitlines()[-2:] if tail.strip() else ["(no log)"]
        if len(done) < MAX_RESTARTS:
            self._event(
                run.run_id,
                "restart",
                attempt=attempt.number,
                message=f"the trainer could not reach its storage ({' '.join(last)}); starting it again "
                f"({len(done) + 1} of {MAX_RESTARTS})",
            )
            return self._transition(run.run_id, RunState.PROVISIONING, "starting the trainer again")
        self._ended(
            run,
            attempt,
            EndKind.RUNNING,
            f"the trainer could not reach its storage {MAX_RESTARTS + 1} times: {' '.join(last)}; "
            "`spotrain resume` tries again",
            exit_code=EXIT_UNAVAILABLE,
        )

    def _requeue(self, run) -> None:
        """INTERRUPTED with --auto-resume: back to REQUESTING (drive checked attempts and budget)."""
        self._transition(run.run_id, RunState.REQUESTING, "automatic resume after an interruption")

    # ------------------------------------------------------------------------------ helpers
    def _follow(self, run, attempt, transport, run_dir: str) -> None:
        def finished() -> bool:
            if self.store.get_run(run.run_id).state in TERMINAL:
                return True  # `spotrain down` ended the run from another process: stop watching
            if self._over_budget(run):
                stop(transport, run_dir, grace_s=60)
            return not process_status(transport, run_dir).running

        path, offset = f"{run_dir}/events.jsonl", attempt.events_offset  # a restarted controller goes on
        for event in follow_events(transport, path, offset=offset, poll_s=self.poll_s, stop=finished):
            if event.kind == "malformed":
                continue
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

    def _injection(self, run, attempt) -> str | None:
        """Dry-run: this attempt's --inject-interruption AT (one per attempt, in order), if any."""
        ats = run.spec.get("inject_interruptions") or []
        return (
            ats[attempt.number - 1] if self.cloud.name == "dry-run" and attempt.number <= len(ats) else None
        )

    def _injection_env(self, run, attempt) -> dict[str, str]:
        at = self._injection(run, attempt)
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

    def _keep_log(self, run, attempt, transport, run_dir: str) -> None:
        """Every attempt's train.log is kept in the state directory: the instance will not be."""
        path = log_path(self.state_dir, run.run_id, attempt.number)
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = [line.text for line in follow(transport, f"{run_dir}/train.log", stop=lambda: True)]
        path.write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")

    def keep_lost_log(self, run_id: str, attempt, *, ask_instance: bool = True) -> bool:
        """Keep the train.log of an attempt that ended without it kept (its controller died, or the
        instance went first) from wherever it still is: the instance (a dry-run instance's directory
        outlives it; a real one may still answer), else the run's S3 mirror (runs/RUN/attempts/N/).
        True when the log is kept now. Not the instance when it just failed to answer (`ask_instance`)."""
        path = log_path(self.state_dir, run_id, attempt.number)
        if path.exists():
            return True
        text = (ask_instance and self._log_on_instance(run_id, attempt)) or self._log_in_mirror(
            run_id, attempt
        )
        if not text:
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return True

    def _log_on_instance(self, run_id: str, attempt) -> str | None:
        if attempt.instance_id is None:
            return None
        try:
            status = self.cloud.describe(attempt.region, attempt.instance_id)
            if status.end != EndKind.RUNNING and self.cloud.name != "dry-run":
                return None  # an ended EC2 instance answers no SSH (a dry-run's directory stays)
            transport = connect(self.cloud.target(status, ssh=self.ssh))
        except Exception:  # noqa: BLE001 - gone, unreachable, unknown to the API: try the mirror
            return None
        try:
            run_dir, _ = self._paths(attempt, run_id)
            lines = [line.text for line in follow(transport, f"{run_dir}/train.log", stop=lambda: True)]
        except (RemoteError, SpotrainError):
            return None
        finally:
            transport.close()
        return "\n".join(lines) + "\n" if lines else None

    def _log_in_mirror(self, run_id: str, attempt) -> str | None:
        from spotrain.cloud.aws import storage

        try:
            found = storage.fetch_attempt(
                self.cloud.session(),
                bucket=self.cloud.bucket(),
                run_id=run_id,
                attempt_id=str(attempt.number),
            )
        except Exception:  # noqa: BLE001 - no bucket, no access, no network: the log is not there
            return None
        return found.train_log or None

    def _adopt(self, run) -> bool:
        """Reconcile with the cloud: a live instance tagged with the run is adopted (extras terminated)."""
        live = [s for s in self.cloud.find_instances(run.run_id) if s.end == EndKind.RUNNING]
        if not live:
            return False
        keep, extra = live[0], live[1:]
        if extra:
            self.cloud.terminate(keep.region, [s.instance_id for s in extra])
        known = self.store.live_attempt(run.run_id)
        if known is None or known.instance_id != keep.instance_id:
            if known is not None:
                self.store.update_attempt(run.run_id, known.number, ended_at=time.time(), end_reason="lost")
            self.store.add_attempt(
                run.run_id,
                instance_id=keep.instance_id,
                region=keep.region,
                zone=keep.zone,
                instance_type=keep.instance_type,
                spot_usd_per_hour=None,
                requested_at=(keep.launch_time.timestamp() if keep.launch_time else time.time()),
            )
        self._transition(run.run_id, RunState.PROVISIONING, f"adopted live instance {keep.instance_id}")
        return True

    def _ended(
        self, run, attempt, end: EndKind, why: str, exit_code: int | None = None, *, answered: bool = True
    ) -> None:
        """The attempt's instance is gone or going: record it; interrupted runs may be resumed."""
        reason = end.value if end != EndKind.RUNNING else "error"
        self._finish_attempt(run, attempt, reason, exit_code, answered=answered)
        if end in (EndKind.SPOT_INTERRUPTION, EndKind.RUNNING):
            self._transition(run.run_id, RunState.INTERRUPTED, why)
            return crash_point("interrupted")
        self._transition(run.run_id, RunState.FAILED, f"instance {attempt.instance_id} ended: {why}")

    def _finish_attempt(
        self, run, attempt, reason: str, exit_code: int | None, *, answered: bool = True
    ) -> None:
        now = time.time()
        # The instance goes next: an attempt that ends without its log kept (the controller died while
        # it trained, and the instance ended meanwhile) keeps it now, while the instance or S3 has it;
        # an instance that just did not answer (`answered` False) is not asked again
        self.keep_lost_log(run.run_id, attempt, ask_instance=answered)
        live = self.store.live_attempt(run.run_id)
        if live is not None and live.number == attempt.number:  # `down` may have ended it meanwhile
            self.store.update_attempt(
                run.run_id, attempt.number, ended_at=now, end_reason=reason, exit_code=exit_code
            )
        with contextlib.suppress(SpotrainError):
            self.cloud.terminate(attempt.region, [attempt.instance_id])
        self._record_prices(attempt.region, attempt.instance_type, attempt.zone, attempt.requested_at, now)

    def _lost_contact(self, run, attempt, err: SpotrainError) -> None:
        """The instance did not answer. One that describe says is gone (InvalidInstanceID.NotFound reads
        as terminated) ends the attempt now; a running one is tried again, within LOST_CONTACT_*."""
        status = self.cloud.describe(attempt.region, attempt.instance_id)
        if status.end != EndKind.RUNNING:
            self._lost.pop((run.run_id, attempt.number), None)
            return self._ended(
                run,
                attempt,
                status.end,
                f"lost contact ({err.message}); {status.reason_code}",
                answered=False,
            )
        since, failures = self._lost.get((run.run_id, attempt.number), (time.monotonic(), 0))
        failures += 1
        self._lost[(run.run_id, attempt.number)] = (since, failures)
        if failures >= self.lost_contact_tries and time.monotonic() - since >= self.lost_contact_s:
            del self._lost[(run.run_id, attempt.number)]
            return self._ended(  # a running instance that never answers: a new one may (`resume`)
                run,
                attempt,
                EndKind.RUNNING,
                f"lost contact with {attempt.instance_id}: {failures} tries in "
                f"{time.monotonic() - since:.0f} s failed ({err.message}); its instance is terminated",
                answered=False,
            )
        self._event(
            run.run_id,
            "warning",
            attempt=attempt.number,
            message=f"lost contact: {err.message}; retrying ({failures} of {self.lost_contact_tries})",
        )
        time.sleep(min(self.poll_s * 2 ** (failures - 1), LOST_CONTACT_PAUSE_S))

    def _in_contact(self, run, attempt) -> None:
        """The instance answered: lost contact counts from zero again."""
        self._lost.pop((run.run_id, attempt.number), None)

    def _remote_failed(self, run, attempt, err: SpotrainError) -> None:
        """A remote error that trying again cannot mend: AuthFailed (the same key pair goes on every
        instance), the bootstrap's failure marker or its 900 s deadline (the same image, data and role
        next time), a failed start. The attempt ends, its instance is terminated, and the run is FAILED
        with the reason, rather than INTERRUPTED, where --auto-resume would pay for instance after
        instance failing the same way. An instance that is gone meanwhile ends as its end says."""
        self._lost.pop((run.run_id, attempt.number), None)
        status = self.cloud.describe(attempt.region, attempt.instance_id)
        if status.end != EndKind.RUNNING:
            return self._ended(
                run, attempt, status.end, f"{err.message}; {status.reason_code}", answered=False
            )
        self._finish_attempt(run, attempt, "error", None, answered=False)
        self._transition(
            run.run_id, RunState.FAILED, f"attempt {attempt.number} on {attempt.instance_id}: {err.message}"
        )

    def _record_prices(self, region: str, instance_type: str, zone: str, start: float, end: float) -> None:
        """Keep the spot prices in force during an attempt, so its cost never needs "now"'s price."""
        from datetime import datetime, timezone

        from spotrain.cloud.aws import prices

        with contextlib.suppress(SpotrainError):
            samples = prices.history(
                self.cloud.session(),
                region=region,
                instance_type=instance_type,
                start=datetime.fromtimestamp(start - 3600, timezone.utc),
                end=datetime.fromtimestamp(end, timezone.utc),
                zones=[zone],
            )
            self.store.add_price_samples(region, samples)

    def _may_resume(self, run, *, automatic: bool) -> bool:
        """Whether an interrupted run goes on. Past --budget (stopped mid-attempt, or another attempt
        would pass it) or --max-attempts it ends FAILED with a reason naming the limit and the numbers;
        its instances are already terminated (the attempt ended). `spotrain resume` raises that reason."""
        spec, attempts = run.spec, self.store.attempts(run.run_id)
        limit = spec.get("max_attempts", 10)
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
        return not automatic or bool(spec.get("auto_resume"))

    def _over_budget(self, run) -> bool:
        """Spent + projected $ past --budget. Decided once: the first time, a `budget` event records the
        numbers (for the messages), and from then on the run stays over budget. While an attempt lives
        this waits for its first step, since only a training trainer turns SIGTERM into a checkpoint;
        between attempts, another attempt's billed minimum counts as projected."""
        budget = run.spec.get("budget")
        if not budget:
            return False
        if self.store.events(run.run_id, kinds=["budget"]):
            return True
        live = self.store.live_attempt(run.run_id)
        if live is not None and live.training_started_at is None:
            return False
        from spotrain.bill import spent_and_projected

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

    def _paths(self, attempt, run_id: str) -> tuple[str, str]:
        """(run directory, bundle directory) on the attempt's instance."""
        return run_paths(self.cloud.workdir(attempt.instance_id), run_id)

    def _trainer_argv(self, run, attempt, run_dir: str, ready: dict[str, str]) -> list[str]:
        gpus = catalog.instance_type(run.spec["instance"]).gpus if self.cloud.name == "aws" else 1
        return trainer_argv(
            run.spec,
            run_id=run.run_id,
            run_dir=run_dir,
            bucket=self.cloud.bucket(),
            gpus=gpus,
            python=ready.get("SPOTRAIN_PYTHON") or self.cloud.python(attempt.instance_id),
            data_dir=ready.get("SPOTRAIN_DATA") or DATA_DIR,
        )

    def _transition(self, run_id: str, state: RunState, reason: str, *, clean_up: bool = True) -> None:
        if not self.store.set_state(run_id, state, reason=reason):
            return  # already there, or ended by another process (`spotrain down`): that stands
        self.on_event(
            {
                "run": run_id,
                "source": "controller",
                "kind": "state",
                "to": state.value,
                "reason": reason,
                "t": time.time(),
            }
        )
        if state in TERMINAL and clean_up:
            self._clean_up(run_id)

    def _clean_up(self, run_id: str) -> None:
        """An ended run leaves nothing behind: its instances (already terminated) and security group go.
        A failure here is recorded, not raised: `spotrain down RUN` tries again."""
        try:
            result = self.cloud.sweep(run_id)
        except SpotrainError as err:
            return self._event(
                run_id, "warning", message=f"clean-up failed: {err.message}; run `spotrain down`"
            )
        self._event(
            run_id,
            "cleanup",
            terminated=result.terminated,
            deleted=result.deleted,
            failed=[f"{f.zone}: {f.message}" for f in result.failed],
        )

    def _event(self, run_id: str, kind: str, **data: Any) -> None:
        self.store.add_event(run_id, kind, data, attempt=data.get("attempt"))
        self.on_event({"run": run_id, "source": "controller", "kind": kind, "t": time.time(), **data})

    def _owner(self) -> str:
        return os.environ.get("USER") or "spotrain"


STEPS: dict[RunState, Callable[[Orchestrator, Any], None]] = {
    RunState.REQUESTING: Orchestrator._request,
    RunState.PROVISIONING: Orchestrator._provision,
    RunState.TRAINING: Orchestrator._train,
    RunState.INTERRUPTED: Orchestrator._requeue,
}
