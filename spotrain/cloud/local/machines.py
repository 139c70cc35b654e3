"""The dry-run's machines: what EC2 does on and to an instance, played on this machine for AwsCloud
(`cloud/base.py`'s `Machines`). Each instance is a directory (its home), a fake IMDS on 127.0.0.1 and a
record on disk (records.py); its boot runs its user data (boot.py); its shell is a local transport in
its directory, or a local sshd; a spot interruption is a notice at its IMDS, then the reclaim.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import boto3

from spotrain.cloud import TAG_OWNER, InstanceStatus
from spotrain.cloud.aws import lifecycle, network
from spotrain.cloud.local import boot
from spotrain.cloud.local import moto_patches as fakes
from spotrain.cloud.local.imds import TRAINER_INJECT_ENV, EventsProgress, FakeImds, Schedule, trainer_pids
from spotrain.cloud.local.records import InstanceFiles, InstanceRecord
from spotrain.errors import SpotrainError
from spotrain.targets import LocalTarget, SSHTarget, Target

POLL_S = 0.1
BOOT_POLL_S = 0.1  # how often a simulated boot looks for its instance ended by another process
# How often the schedule watcher reads the events (a cheap local read): a `20s` notice is posted within
# this of its time, a pinned one's reclaim starts within this of the trainer's `interruption` event.
SCHEDULE_POLL_S = 0.005
# The instance has its own credentials (moto's), no profile: these of the controller's env stay behind.
NOT_INHERITED = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")


class _Live:
    """A running dry-run instance: its record, IMDS server and the threads that may end it."""

    def __init__(self, record: InstanceRecord, imds: FakeImds) -> None:
        self.record, self.imds = record, imds
        self.threads: list[threading.Thread] = []
        self.boot: subprocess.Popen | None = None  # its user data, while it runs


class LocalMachines:
    """The instances of one dry-run state directory, for as long as one controller process runs."""

    def __init__(
        self,
        instances_dir: Path,
        api: boto3.Session,
        endpoint: str,
        *,
        boot_delay_s: float = 2.0,
        notice_grace_s: float = 120.0,
        imds_poll_s: float = 0.01,
        sshd: SSHTarget | None = None,
    ) -> None:
        self.instances_dir, self._api, self.endpoint = instances_dir, api, endpoint
        self.boot_delay_s, self.notice_grace_s, self.imds_poll_s = boot_delay_s, notice_grace_s, imds_poll_s
        self.sshd = sshd  # a local sshd that reaches this machine, for reach(ssh=True)
        self.files = InstanceFiles(instances_dir)
        self._lock = threading.RLock()
        self._closing = threading.Event()
        self._live: dict[str, _Live] = {}

    # -- Machines ------------------------------------------------------------------------------

    def caller_cidr(self) -> str | None:
        return fakes.LOOPBACK_CIDR  # this machine's loopback stands in for the caller's address

    def launched(self, status: InstanceStatus) -> None:
        record = InstanceRecord(
            status.instance_id, status.region, status.zone, status.instance_type, status.tags, 0
        )
        home = self.instance_dir(status.instance_id)
        home.mkdir(parents=True, exist_ok=True)
        boot.keep_user_data(home, fakes.user_data(status.region, status.instance_id))
        self.attach(record)

    def booted(self, status: InstanceStatus, deadline_s: float) -> None:
        """Sleeps the simulated boot (moto says running at once), then starts the user data; an instance
        ended meanwhile (`spotrain down` in another process) ends the boot at once, as EC2's waiter does."""
        end = time.monotonic() + min(self.boot_delay_s, max(0.0, deadline_s))
        while not self._closing.wait(min(BOOT_POLL_S, max(0.0, end - time.monotonic()))):
            if time.monotonic() >= end or self.files.ended(status.instance_id):
                break
        if self._closing.is_set() or self.files.ended(status.instance_id):
            return
        home = self.instance_dir(status.instance_id)
        if boot.started(home):
            return  # booted before this process saw it (adopted after a controller died)
        proc = boot.start_user_data(home, boot.kept_user_data(home))
        with self._lock:
            live = self._live.get(status.instance_id)
            if live is not None:
                live.boot = proc
        if proc is not None:
            threading.Thread(target=proc.wait, name=f"boot-{status.instance_id}", daemon=True).start()

    def seen(self, status: InstanceStatus) -> InstanceStatus:
        """Ended by this process meanwhile (in moto first, then in its record: asked again, moto says
        so), or by `down` in another process, which only the record tells: then end it here too."""
        region, instance_id = status.region, status.instance_id
        if status.reason_code == lifecycle.GONE and self._launched_elsewhere(instance_id):
            self.restore(self.files.load(instance_id))  # by another process after this one's moto began
            status = lifecycle.describe(self._api, region=region, instance_id=instance_id)
        if status.state == "running" and self.files.ended(instance_id):
            status = lifecycle.describe(self._api, region=region, instance_id=instance_id)
            if status.state == "running":
                with contextlib.suppress(SpotrainError):
                    lifecycle.terminate(self._api, region=region, instance_ids=[instance_id])
                status = lifecycle.describe(self._api, region=region, instance_id=instance_id)
        return status

    def ended(self, instance_ids: list[str]) -> None:
        """The instances ended: their processes die with them, their IMDS goes, their records say so."""
        for instance_id in instance_ids:
            with self._lock:
                live = self._live.pop(instance_id, None)
            if live is None:
                continue
            pids = trainer_pids(self.instance_dir(instance_id))
            if live.boot is not None and live.boot.poll() is None:
                pids.append(live.boot.pid)  # its bootstrap, still running, dies with it too
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.killpg(pid, signal.SIGKILL)
            live.record = replace(live.record, state="terminated")
            self.files.save(live.record)
            live.imds.close()

    def reach(self, target: SSHTarget, *, ssh: bool) -> Target:
        """The instance directory, run in with HOME there and the instance's env; with ssh=True, the
        given local sshd, the remote layer's state kept inside the instance directory. AWS's answer
        (address, login user, key file) was checked by AwsCloud; this machine is where it leads."""
        home, python = self.instance_dir(target.instance_id), self.python(target.instance_id)
        if not ssh:
            return LocalTarget(home, python, env=self.instance_env(target.instance_id), unset=NOT_INHERITED)
        if self.sshd is None:
            raise SpotrainError(
                "the dry-run has no sshd to reach instances by SSH", "pass sshd=SSHTarget(...)"
            )
        return replace(
            self.sshd, instance_id=target.instance_id, python=python, state_dir=f"{home}/.spotrain-remote"
        )

    def instance_env(self, instance_id: str) -> dict[str, str]:
        record = self._record(instance_id)
        return {
            "SPOTRAIN_IMDS_URL": f"http://127.0.0.1:{record.imds_port}",
            "SPOTRAIN_IMDS_POLL_S": f"{self.imds_poll_s:g}",
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": fakes.DUMMY_KEY,
            "AWS_SECRET_ACCESS_KEY": fakes.DUMMY_KEY,
            "AWS_DEFAULT_REGION": record.region,
            "AWS_REGION": record.region,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def python(self, instance_id: str) -> str:
        return sys.executable

    def home(self, instance_id: str) -> str:
        """`~` as on the real image (the local transport's HOME is the instance directory); over the
        local sshd, whose HOME is this machine's user's, the instance directory itself."""
        return str(self.instance_dir(instance_id)) if self.sshd is not None else "~"

    def boot_dir(self, instance_id: str) -> str:
        return str(boot.boot_dir(self.instance_dir(instance_id)))

    def close(self) -> None:
        """Stop the watchers and the IMDS servers. The instances' records and processes stay, for the
        next controller on this state directory."""
        self._closing.set()
        with self._lock:
            lives = list(self._live.values())
            self._live.clear()
        for live in lives:
            for thread in live.threads:
                if thread is not threading.current_thread():
                    thread.join(10)
            live.imds.close()

    # -- the dry-run's own verbs ---------------------------------------------------------------

    def instance_dir(self, instance_id: str) -> Path:
        return self.instances_dir / instance_id

    def restore(self, record: InstanceRecord) -> None:
        """Put an instance another process launched (or a killed controller left) into this process's
        moto: same id, tags, zone, public address and key pair (imported again from the state
        directory), so that this process reaches it as AWS says to."""
        owner = record.tags.get(TAG_OWNER, "dry-run")
        state_dir = self.instances_dir.parent
        key = network.ensure_key_pair(self._api, region=record.region, owner=owner, state_dir=state_dir)
        fakes.restore_instance(
            self._api,
            instance_id=record.instance_id,
            region=record.region,
            zone=record.zone,
            instance_type=record.instance_type,
            tags=record.tags,
            key_name=key.name,
        )
        self.attach(record)

    def _launched_elsewhere(self, instance_id: str) -> bool:
        with self._lock:
            if instance_id in self._live:
                return False
        with contextlib.suppress(SpotrainError):
            return self.files.load(instance_id).state == "running"
        return False

    def attach(self, record: InstanceRecord) -> None:
        """Serve the instance's IMDS (on its old port when it had one) and keep its record."""
        imds = FakeImds(record.instance_id, record.zone, port=record.imds_port)
        live = _Live(replace(record, imds_port=imds.port), imds)
        with self._lock:
            self._live[record.instance_id] = live
        self.files.save(live.record)
        if record.notice is not None:
            imds.notice = record.notice
            self._spawn(record.instance_id, self._reclaim_after_notice)

    def inject_interruption(self, instance_id: str) -> dict[str, str]:
        """Post the spot notice at the instance's IMDS; when its trainer has exited, or after
        `notice_grace_s`, the instance ends with Server.SpotInstanceTermination."""
        with self._lock:
            live = self._live_of(instance_id)
            if live.record.notice is not None:
                return live.record.notice
            when = datetime.now(timezone.utc) + timedelta(seconds=self.notice_grace_s)
            live.record = replace(live.record, notice=live.imds.post_notice(when))
            self.files.save(live.record)
        self._spawn(instance_id, self._reclaim_after_notice)
        return live.record.notice

    def injection_env(self, at: str) -> dict[str, str]:
        """What the trainer's environment needs for `--inject-interruption AT`: a notice pinned to
        progress (`step:30`, `50%`) is raised by the trainer itself at that step."""
        schedule = Schedule.parse(at)
        return {TRAINER_INJECT_ENV: schedule.text} if schedule.pinned else {}

    def schedule_interruption(self, instance_id: str, at: str, events_path: str | Path) -> Schedule:
        """Interrupt the instance as `at` says, watching the trainer's `events_path` (relative or `~/`:
        in the instance): `20s` after the first step event the notice is posted at the IMDS; for a
        pinned `step:N` or `P%` (see `injection_env`) it is posted when the trainer reports it stopped
        for it, so the instance is reclaimed as EC2 would."""
        schedule = Schedule.parse(at)
        path = Path(str(events_path).removeprefix("~/"))
        progress = EventsProgress(path if path.is_absolute() else self.instance_dir(instance_id) / path)

        def watch(live: _Live) -> None:
            while not self._closing.is_set() and live.record.state == "running":
                if progress.due(schedule):
                    with contextlib.suppress(SpotrainError):  # ended meanwhile: nothing to post
                        self.inject_interruption(instance_id)
                    return
                self._closing.wait(SCHEDULE_POLL_S)

        self._spawn(instance_id, watch)
        return schedule

    # -- ending instances ----------------------------------------------------------------------

    def _reclaim_after_notice(self, live: _Live) -> None:
        deadline = time.monotonic() + self.notice_grace_s
        seen = bool(trainer_pids(self.instance_dir(live.record.instance_id)))
        while time.monotonic() < deadline:
            if self._closing.wait(POLL_S):
                return
            running = bool(trainer_pids(self.instance_dir(live.record.instance_id)))
            if seen and not running:
                break
            seen = seen or running
        if live.record.state == "running":
            fakes.interrupt(live.record.region, live.record.instance_id)
            self.ended([live.record.instance_id])

    def _spawn(self, instance_id: str, target: Any) -> None:
        live = self._live_of(instance_id)
        thread = threading.Thread(target=target, args=(live,), name=f"dry-run-{instance_id}", daemon=True)
        live.threads.append(thread)
        thread.start()

    def _live_of(self, instance_id: str) -> _Live:
        with self._lock:
            if instance_id not in self._live:
                raise SpotrainError(f"dry-run instance {instance_id} is not running", "see `spotrain status`")
            return self._live[instance_id]

    def _record(self, instance_id: str) -> InstanceRecord:
        with self._lock:
            if instance_id in self._live:
                return self._live[instance_id].record
        return self.files.load(instance_id)
