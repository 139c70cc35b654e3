"""How an attempt ends, mixed into the Orchestrator: the instance gone or going (interrupted, lost
contact, a remote failure that trying again cannot mend), the attempt recorded with its reason, its
instance terminated, the prices in force kept for its bill, and its train.log kept in the state
directory from wherever it still is (the instance, else the run's S3 mirror)."""

from __future__ import annotations

import contextlib
import time

from spotrain.cloud import EndKind
from spotrain.errors import SpotrainError
from spotrain.layout import crash_point, log_path
from spotrain.remote import RemoteError, connect, follow
from spotrain.store import RunState

# Lost contact (a dropped connection, no SSH session within the transport's deadline) is retried, with
# a growing pause, until it has failed this many times in a row AND for this long; then the attempt
# ends (its instance terminated) and the run waits, INTERRUPTED. Both, so that neither a burst of quick
# failures nor one slow SSH deadline (300 s, remote/ssh.py) ends an attempt that a laptop's sleep broke.
LOST_CONTACT_TRIES, LOST_CONTACT_S, LOST_CONTACT_PAUSE_S = 10, 900.0, 30.0
# An interrupted instance in its first hour is left for EC2 to reclaim (free), for at most this long
# after the trainer stopped: the notice comes 2 minutes ahead, and EC2 takes a little more.
FREE_HOUR_S, RECLAIM_WAIT_S = 3600.0, 180.0


class AttemptEnds:
    """The Orchestrator's attempt-ending half (it holds store, cloud, state_dir, ssh, poll_s and the
    lost-contact counters, and the _transition, _event and _paths these call)."""

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
        if self._finish_nodes(run, attempt, reason, exit_code):  # a multi-node attempt: every node ends
            return self._record_prices(
                attempt.region, attempt.instance_type, attempt.zone, attempt.requested_at, now
            )
        by = self._reclaimed_by(run, attempt) if reason == EndKind.SPOT_INTERRUPTION.value else None
        if by != "ec2":
            with contextlib.suppress(SpotrainError):
                self.cloud.terminate(attempt.region, [attempt.instance_id])
        if by is not None:
            self._event(run.run_id, "reclaim", attempt=attempt.number, by=by)
        self._record_prices(attempt.region, attempt.instance_type, attempt.zone, attempt.requested_at, now)

    def _reclaimed_by(self, run, attempt) -> str:
        """Who ends an interrupted attempt's instance: "ec2", when EC2 reclaims it as its notice said,
        or "spotrain". AWS does not charge a spot instance that EC2 interrupts in its first hour; one
        terminated by its owner is billed per second ("Billing for interrupted Spot Instances", EC2 user
        guide). So within the first hour the instance is left to EC2 (up to RECLAIM_WAIT_S: the notice
        comes two minutes ahead), unless --terminate-on-notice; later it is terminated at once."""
        if run.spec.terminate_on_notice:
            return "spotrain"  # asked to end it at once: billed to the second, whoever is first
        age = time.time() - (attempt.started_at or attempt.requested_at)
        end, pause = self.clock() + max(min(RECLAIM_WAIT_S, FREE_HOUR_S - age), 0.0), min(0.05, self.poll_s)
        while True:
            status = self.cloud.describe(attempt.region, attempt.instance_id)
            if status.end == EndKind.SPOT_INTERRUPTION:
                return "ec2"
            if status.end != EndKind.RUNNING or self.clock() >= end:
                return "spotrain"
            # from 50 ms up to poll_s: EC2 often reclaims just after the trainer stopped, and the next
            # attempt's request waits for this answer
            self.sleep(min(pause, max(end - self.clock(), 0.0)))
            pause = min(self.poll_s, pause * 2)

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
