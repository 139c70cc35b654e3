"""The dry-run cloud: the real `cloud/aws/` code against a moto server on 127.0.0.1, with each
"instance" a directory on this machine, its own fake IMDS, and spot interruptions injected on command.

    cloud = LocalCloud(state_dir)                         # moto seeded: prices, DLAMI, quotas, bucket
    started = cloud.start_attempt(req)                    # real boto3 calls, zone plan and failover
    t = connect(cloud.target(started))                    # remote.connect: LocalTransport in instances/ID
    env = cloud.injection_env("step:30")                  # for the trainer: a notice at step 30
    cloud.schedule_interruption(id, "step:30", events_path)  # or inject_interruption(id) at once

moto keeps its state in its process's memory. To survive a killed controller, each instance is also a
record on disk (records.py) and the bucket is written through to `s3/BUCKET/`: a new LocalCloud on the
same state directory re-registers every live instance under its old id and IMDS port, reloads the
bucket, and takes its old moto port when free, so a trainer that kept running reaches both again.
FIS's spot interruption (moto_patches.fis_interruptions) is played as `inject_interruption`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from contextlib import ExitStack
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import boto3
from moto.moto_api._internal.models import moto_api_backend
from moto.server import ThreadedMotoServer

from spotrain import catalog
from spotrain.cloud import TAG_OWNER, InstanceStatus, SweepResult
from spotrain.cloud.aws import attempt, client, fis, lifecycle
from spotrain.cloud.aws import sweep as aws_sweep
from spotrain.cloud.aws.attempt import AttemptRequest, StartedAttempt
from spotrain.cloud.base import Shell
from spotrain.cloud.local import moto_patches as fakes
from spotrain.cloud.local.imds import TRAINER_INJECT_ENV, EventsProgress, FakeImds, Schedule, trainer_pids
from spotrain.cloud.local.records import InstanceFiles, InstanceRecord, save_moto_port, saved_moto_port
from spotrain.errors import SpotrainError
from spotrain.targets import LocalTarget, SSHTarget

REGIONS = {
    "us-east-1": ["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d", "us-east-1f"],
    "us-west-2": ["us-west-2a", "us-west-2b", "us-west-2c"],
}
BUCKET = "spotrain-dry-run"  # the bucket name the dry-run deploys infra/spotrain.yaml with
HOME_REGION = "us-east-1"  # where its stack (bucket, instance role and profile) lives
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


class LocalCloud:
    """The `Cloud` of `--dry-run`. One per process at a time (moto's backends are process-wide)."""

    name = "dry-run"

    def __init__(
        self,
        state_dir: Path,
        *,
        boot_delay_s: float = 2.0,
        seed: int = 0,
        notice_grace_s: float = 120.0,
        imds_poll_s: float = 0.01,
        sshd: SSHTarget | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.boot_delay_s, self.seed = boot_delay_s, seed
        self.notice_grace_s, self.imds_poll_s = notice_grace_s, imds_poll_s
        self.sshd = sshd  # a local sshd that reaches this machine, for target(ssh=True)
        self.instances_dir = self.state_dir / "instances"
        self._files = InstanceFiles(self.instances_dir)
        self._lock = threading.RLock()
        self._closing = threading.Event()
        self._live: dict[str, _Live] = {}
        self._stack = ExitStack()
        self._server: ThreadedMotoServer | None = None
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    # -- the moto server and its seed ----------------------------------------------------------

    def _start(self) -> None:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        moto_api_backend.reset()  # a fresh cloud, as a new controller process would get
        types = sorted(catalog.INSTANCE_TYPES)
        rows = fakes.seeded_history(
            regions=REGIONS, instance_types=types, now=datetime.now(timezone.utc), seed=self.seed
        )
        self._stack.enter_context(fakes.spot_prices(rows))
        self._stack.enter_context(fakes.quotas(dict.fromkeys(fakes.SPOT_QUOTA_CODES, 4096.0)))
        s3_root = self.state_dir / "s3" / BUCKET
        self._stack.enter_context(fakes.persistent_bucket(BUCKET, s3_root))
        self._stack.enter_context(fakes.fis_interruptions(self.inject_interruption))
        self._server = ThreadedMotoServer(
            ip_address="127.0.0.1", port=saved_moto_port(self.state_dir), verbose=False
        )
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        save_moto_port(self.state_dir, port)
        self._session = fakes.endpoint_session(self.endpoint, self.state_dir / "aws-config")
        for region in REGIONS:
            fakes.seed_dlamis(region)
        # What `spotrain init` does once per account: the stack from infra/, its outputs kept in this
        # state directory (never the real one). The bucket and the instance profile come from them.
        self.stack = fakes.deploy_stack(self._session, region=HOME_REGION, bucket=BUCKET, home=self.state_dir)
        s3 = self._session.client("s3", region_name=HOME_REGION)
        for key, data in fakes.saved_objects(s3_root):
            s3.put_object(Bucket=self.stack.bucket, Key=key, Body=data)
        for record in self._files.running():
            self._restore(record)

    def _restore(self, record: InstanceRecord) -> None:
        """Put an instance a killed controller left running back into the fresh moto, same id."""
        fakes.restore_instance(
            self._session,
            instance_id=record.instance_id,
            region=record.region,
            zone=record.zone,
            instance_type=record.instance_type,
            tags=record.tags,
        )
        self._attach(record)
        if record.notice is not None:
            self._live[record.instance_id].imds.notice = record.notice
            self._spawn(record.instance_id, self._reclaim_after_notice)

    def _attach(self, record: InstanceRecord) -> _Live:
        imds = FakeImds(record.instance_id, record.zone, port=record.imds_port)
        live = _Live(replace(record, imds_port=imds.port), imds)
        with self._lock:
            self._live[record.instance_id] = live
        self._files.save(live.record)
        return live

    # -- Cloud ---------------------------------------------------------------------------------

    def session(self) -> boto3.Session:
        return self._session

    def start_attempt(self, req: AttemptRequest) -> StartedAttempt:
        """The real launch path on moto; this machine's loopback stands in for the caller's address."""
        if req.ssh_cidr is None:
            req = replace(req, ssh_cidr=fakes.LOOPBACK_CIDR)
        started = attempt.start_attempt(self._session, req)
        inst = started.instance
        status = lifecycle.describe(self._session, region=inst.region, instance_id=inst.instance_id)
        record = InstanceRecord(inst.instance_id, inst.region, inst.zone, inst.instance_type, status.tags, 0)
        self.instance_dir(inst.instance_id).mkdir(parents=True, exist_ok=True)
        self._attach(record)
        return started

    def wait_running(self, region: str, instance_id: str, deadline_s: float) -> InstanceStatus:
        """Sleeps the simulated boot (moto says running at once), then how the instance is; an instance
        ended meanwhile (`spotrain down` in another process) ends the wait at once, as EC2's waiter does."""
        end = time.monotonic() + min(self.boot_delay_s, max(0.0, deadline_s))
        while not self._closing.wait(min(BOOT_POLL_S, max(0.0, end - time.monotonic()))):
            if time.monotonic() >= end or self._files.ended(instance_id):
                break
        return self.describe(region, instance_id)

    def describe(self, region: str, instance_id: str) -> InstanceStatus:
        status = lifecycle.describe(self._session, region=region, instance_id=instance_id)
        if status.state == "running" and self._files.ended(instance_id):
            # Ended by this process meanwhile (in moto first, then in its record: asked again, moto says
            # so), or by `down` in another process, which only the record tells: then end it here too.
            status = lifecycle.describe(self._session, region=region, instance_id=instance_id)
            if status.state == "running":
                with contextlib.suppress(SpotrainError):
                    lifecycle.terminate(self._session, region=region, instance_ids=[instance_id])
                status = lifecycle.describe(self._session, region=region, instance_id=instance_id)
        if status.state in {"shutting-down", "terminated"}:
            self._retire(instance_id)  # ended by a call we did not see (the aws sweep, a raw client)
        return status

    def find_instances(self, run_id: str) -> list[InstanceStatus]:
        found = []
        for region in REGIONS:
            for inst in lifecycle.run_instances_live(client(self._session, "ec2", region), run_id):
                found.append(self.describe(region, inst["InstanceId"]))
        return found

    def terminate(self, region: str, instance_ids: list[str]) -> None:
        lifecycle.terminate(self._session, region=region, instance_ids=instance_ids)
        for instance_id in instance_ids:
            self._retire(instance_id)

    def sweep(self, run_id: str | None) -> SweepResult:
        """What the aws sweep removes (instances, spot requests, volumes, security groups), and for
        every run (None), spotrain's key pairs too."""
        leftovers = aws_sweep.find_leftovers(self._session, regions=list(REGIONS), run_id=run_id)
        result = aws_sweep.sweep(self._session, leftovers, deadline_s=30)
        for instance_id in result.terminated:
            self._retire(instance_id)
        if run_id is None:
            for region in REGIONS:
                ec2 = client(self._session, "ec2", region)
                keys = ec2.describe_key_pairs(Filters=[{"Name": "tag-key", "Values": [TAG_OWNER]}])
                for key in keys["KeyPairs"]:
                    ec2.delete_key_pair(KeyName=key["KeyName"])
                    result.deleted.append(key["KeyName"])
        return result

    def target(
        self, instance: StartedAttempt | InstanceStatus, *, ssh: bool = False
    ) -> LocalTarget | SSHTarget:
        """The instance directory, run in with HOME there and the instance's env; with ssh=True, the
        given local sshd, the remote layer's state kept inside the instance directory."""
        instance_id = (
            instance.instance.instance_id if isinstance(instance, StartedAttempt) else instance.instance_id
        )
        home, python = self.instance_dir(instance_id), self.python(instance_id)
        if not ssh:
            return LocalTarget(home, python, env=self.instance_env(instance_id), unset=NOT_INHERITED)
        if self.sshd is None:
            raise SpotrainError(
                "the dry-run has no sshd to reach instances by SSH", "pass sshd=SSHTarget(...)"
            )
        return replace(
            self.sshd, instance_id=instance_id, python=python, state_dir=f"{home}/.spotrain-remote"
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

    def workdir(self, instance_id: str) -> str:
        """Where spotrain keeps the bundle and runs on the instance: an absolute path inside the
        instance directory, the same over the local transport and over SSH."""
        return str(self.instance_dir(instance_id) / "spotrain")

    def bucket(self) -> str:
        """The stack's checkpoint bucket (infra/spotrain.yaml deployed on moto at start)."""
        return self.stack.bucket

    def instance_profile(self) -> str | None:
        """The stack's instance profile: each dry-run instance is launched with it, as on AWS."""
        return self.stack.instance_profile_arn

    def user_data(self, spec: dict) -> str | None:
        """A dry-run instance runs no bootstrap: this machine's Python is the instance's."""
        return None

    def wait_ready(self, transport: Shell, deadline_s: float, **_: Any) -> dict[str, str]:
        return {}  # no bootstrap, so no stage (on_stage) to report

    def send_interruption(self, region: str, instance_id: str, run_id: str) -> fis.Sent:
        """The real FIS calls on moto with the stack's FIS role; StartExperiment interrupts the instance."""
        sess, role = self._session, self.stack.fis_role_arn
        return fis.interrupt_or_fallback(
            sess, region=region, instance_id=instance_id, role_arn=role, run_id=run_id
        )

    def close(self) -> None:
        """Stop the watchers, the IMDS servers and the moto server; undo the patches. The instances'
        records and processes stay, for the next LocalCloud on this state directory."""
        self._closing.set()
        with self._lock:
            lives = list(self._live.values())
            self._live.clear()
        for live in lives:
            for thread in live.threads:
                if thread is not threading.current_thread():
                    thread.join(10)
            live.imds.close()
        if self._server is not None:
            self._server.stop()
            if self._server._server is not None:
                self._server._server.server_close()
            self._server = None
        self._stack.close()

    # -- the dry-run's own verbs ---------------------------------------------------------------

    def instance_dir(self, instance_id: str) -> Path:
        return self.instances_dir / instance_id

    def inject_interruption(self, instance_id: str) -> dict[str, str]:
        """Post the spot notice at the instance's IMDS; when its trainer has exited, or after
        `notice_grace_s`, the instance ends with Server.SpotInstanceTermination."""
        with self._lock:
            live = self._live_of(instance_id)
            if live.record.notice is not None:
                return live.record.notice
            when = datetime.now(timezone.utc) + timedelta(seconds=self.notice_grace_s)
            live.record = replace(live.record, notice=live.imds.post_notice(when))
            self._files.save(live.record)
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
            self._retire(live.record.instance_id)

    def _retire(self, instance_id: str) -> None:
        """The instance ended: its processes die with it, its IMDS goes, its record says so."""
        with self._lock:
            live = self._live.pop(instance_id, None)
        if live is None:
            return
        for pid in trainer_pids(self.instance_dir(instance_id)):
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
        live.record = replace(live.record, state="terminated")
        self._files.save(live.record)
        live.imds.close()

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
        return self._files.load(instance_id)
