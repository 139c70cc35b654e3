"""The run's state machine: REQUESTING -> PROVISIONING -> TRAINING -> (INTERRUPTED -> REQUESTING ...) ->
SUCCEEDED | FAILED | CANCELLED.

Each state has one step function; `drive` runs them until the run ends or waits for the user. Every
step is idempotent: the controller can be killed at any line and started again (`spotrain resume`),
and the step it was in runs again, after reconciling with what the cloud says (instances found by
their `spotrain:run` tag): a live instance is adopted, never a second one started. Every transition is
written to the store (with its event) before the action it announces.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spotrain import plan
from spotrain.attempt_end import LOST_CONTACT_S, LOST_CONTACT_TRIES, AttemptEnds
from spotrain.cloud import EndKind
from spotrain.cloud.aws.attempt import AttemptRequest
from spotrain.cloud.aws.instances import LaunchSpec
from spotrain.contract import WORKDIR
from spotrain.errors import SpotrainError
from spotrain.layout import crash_point, run_lock
from spotrain.node_group import NodeGroup
from spotrain.remote import (
    ConnectionLost,
    Unreachable,
    connect,
    process_status,
    read_tail,
    sync,
)
from spotrain.run_limits import RunLimits
from spotrain.store import TERMINAL, RunState, Store
from spotrain.trainer_watch import TrainerWatch

EXIT_DONE, EXIT_UNAVAILABLE, EXIT_INTERRUPTED = 0, 69, 75  # the trainer's contract (trainer/__init__.py)
MAX_RESTARTS = 3  # an attempt starts a trainer that could not reach S3 again at most this often
TRANSIENT = (ConnectionLost, Unreachable)  # the remote layer's "try again" errors (remote/base.py)
CANCELLED_BY_DOWN = "cancelled by `spotrain down`"
OnEvent = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Outcome:
    run_id: str
    state: RunState
    reason: str


class Orchestrator(AttemptEnds, TrainerWatch, RunLimits, NodeGroup):
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
        self.clock, self.sleep = time.monotonic, time.sleep  # the waits' (tests give their own)
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
        """REQUESTING: adopt a live instance of the run, or launch one in the zones the plan orders for
        this attempt (prices now, --zone, --max-price, the zone that just interrupted us last)."""
        if self._adopt(run):
            return
        spec, planned, attempts = run.spec, self._plan(run), self.store.attempts(run.run_id)
        demote = [a.zone for a in attempts if a.end_reason == EndKind.SPOT_INTERRUPTION.value][-1:]
        number = len(attempts) + 1
        launch = LaunchSpec(
            run_id=run.run_id,
            attempt_id=f"{run.run_id}-{number}",
            owner=self._owner(),
            instance_type=planned.instance_type,
            root_gb=planned.root_gb,
            data_iops=planned.data_iops,
            data_mib_s=planned.data_mib_s,
            data_snapshot_id=spec.data if (spec.data or "").startswith("snap-") else None,
            max_price=spec.max_price,
            user_data=self.cloud.user_data(spec),
            instance_profile=self.cloud.instance_profile(),
            nodes=spec.nodes,  # all in one request, one zone, all or none
        )
        self._event(run.run_id, "launch", attempt=number, instance_type=planned.instance_type, demoted=demote)
        crash_point("requesting")
        started = self._launch_waiting(  # each try in the plan's zone order at the prices then
            run,
            lambda: self.cloud.start_attempt(
                AttemptRequest(
                    spec=launch,
                    regions=spec.regions,
                    state_dir=self.state_dir,
                    order=plan.zone_order(self.cloud.session(), spec, demote=demote),
                    ssh_cidr=spec.ssh_cidr,
                    ami=spec.ami,
                )
            ),
        )
        if started is None:
            return  # `spotrain down` ended the run while it waited for capacity
        crash_point("launched")  # an instance exists that the store does not know yet
        inst = started.instance
        added = self.store.add_attempt(
            run.run_id,
            instance_id=inst.instance_id,
            region=inst.region,
            zone=inst.zone,
            instance_type=inst.instance_type,
            spot_usd_per_hour=inst.spot_usd_per_hour,
            requested_at=time.time(),
        )
        self._record_nodes(run.run_id, added.number, inst)  # a multi-node attempt's every node
        self._transition(
            run.run_id,
            RunState.PROVISIONING,
            # the image's reason is the plan's to say, once: not again on every attempt
            f"{inst.instance_id} in {inst.zone} at ${inst.spot_usd_per_hour or 0:.3f}/h, image {started.image.image_id}",
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
        if self.store.nodes(run.run_id, attempt.number):  # a multi-node attempt: node_group.py
            return self._provision_nodes(run, attempt)
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
            # Ready first: the instance is usable once its bootstrap says so (an adopted one said it long
            # ago, and answers at the first probe); then whether a trainer already runs there.
            self._warm_up(run, attempt, transport, run_dir)  # imports while the bootstrap ends, the sync runs
            ready = self._wait_ready(run.run_id, attempt, transport)
            proc = process_status(transport, run_dir)
            if not proc.running or proc.waiting:  # an adopted instance may be training (not just warm)
                result = sync(transport, self._sources(run), bundle, filtered=(WORKDIR,))
                self._event(
                    run.run_id,
                    "sync",
                    attempt=attempt.number,
                    files=result.files_sent,
                    bytes=result.bytes_sent,
                    seconds=round(result.seconds, 3),
                )
                crash_point("syncing")
                self._start_trainer(run, attempt, transport, run_dir, bundle, ready)
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
        run_dir, transport, peers = self._paths(attempt, run.run_id)[0], None, self._open_peers(run, attempt)
        try:
            transport = connect(self.cloud.target(status, ssh=self.ssh))
            self._follow(run, attempt, transport, run_dir)
            if self.store.get_run(run.run_id).state in TERMINAL:
                return self._keep_log(run, attempt, transport, run_dir)  # down's word stands
            proc = self._final_status(transport, run_dir)
            self._keep_log(run, attempt, transport, run_dir)
            self._keep_node_logs(run, attempt, peers)  # a multi-node attempt's other nodes' logs
            if proc.exit_code not in (EXIT_DONE, EXIT_INTERRUPTED):
                tail = "\n".join(read_tail(transport, f"{run_dir}/train.log", 15))
        except TRANSIENT as err:
            return self._lost_contact(run, attempt, err)
        except SpotrainError as err:
            return self._remote_failed(run, attempt, err)
        finally:
            self._close_peers(peers)
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
        if (gone := self._node_gone(run, attempt)) is not None:  # its peers' collectives timed out
            why = f"node {gone[0]} ended ({gone[1].reason_code})"
            return self._ended(run, attempt, gone[1].end, why, exit_code=proc.exit_code)
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
    def _adopt(self, run) -> bool:
        """Reconcile with the cloud: a live instance tagged with the run is adopted (extras terminated)."""
        live = [s for s in self.cloud.find_instances(run.run_id) if s.end == EndKind.RUNNING]
        if not live:
            return False
        if run.spec.nodes > 1:  # not adopted: ended, and N new nodes launched (node_group.py)
            return self._drop_nodes(run, live)
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
