"""The dry-run cloud: `AwsCloud` itself, against a moto server on 127.0.0.1, with the machines played
on this machine (`machines.py`: each "instance" a directory with its own fake IMDS, its user data run
at boot, spot interruptions injected on command). One cloud class, two worlds: every AWS call a real
launch makes, the dry-run makes too, on moto.

    cloud = LocalCloud(state_dir)                         # moto seeded: prices, DLAMI, quotas, the stack
    started = cloud.start_attempt(req)                    # AwsCloud's: zone plan, failover, key, group
    t = connect(cloud.target(started))                    # remote.connect: LocalTransport in instances/ID
    env = cloud.injection_env("step:30")                  # for the trainer: a notice at step 30
    cloud.schedule_interruption(id, "step:30", events_path)  # or inject_interruption(id) at once

moto keeps its state in its process's memory. To survive a killed controller, each instance is also a
record on disk (records.py) and the bucket is written through to `s3/BUCKET/`: a new LocalCloud on the
same state directory re-registers every live instance under its old id, key pair and IMDS port,
reloads the bucket, and takes its old moto port when free, so a trainer that kept running reaches both
again. FIS's spot interruption (moto_patches.fis_interruptions) is played as `inject_interruption`.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path

import boto3
from moto.moto_api._internal.models import moto_api_backend
from moto.server import ThreadedMotoServer

from spotrain import catalog
from spotrain.cloud.aws.cloud import AwsCloud
from spotrain.cloud.local import moto_patches as fakes
from spotrain.cloud.local import stand_in_files
from spotrain.cloud.local.imds import Schedule
from spotrain.cloud.local.machines import LocalMachines
from spotrain.cloud.local.records import save_moto_port, saved_moto_port
from spotrain.targets import SSHTarget

REGIONS = {
    "us-east-1": ["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d", "us-east-1f"],
    "us-west-2": ["us-west-2a", "us-west-2b", "us-west-2c"],
}
BUCKET = "spotrain-dry-run"  # the bucket name the dry-run deploys infra/spotrain.yaml with
HOME_REGION = "us-east-1"  # where its stack (bucket, instance role and profile) lives


class LocalCloud(AwsCloud):
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
        self.seed = seed
        self.instances_dir = self.state_dir / "instances"
        self.instances_dir.mkdir(parents=True, exist_ok=True)
        self._stack = ExitStack()
        self._server: ThreadedMotoServer | None = None
        self._lease: Path | None = None  # this process's use of a detached run's stand-in, while it lasts
        self._joined = False  # on the stand-in's moto, not this process's own
        self._local: LocalMachines | None = None
        try:
            api = self._start_moto()
            self._local = LocalMachines(
                self.instances_dir,
                api,
                self.endpoint,
                boot_delay_s=boot_delay_s,
                notice_grace_s=notice_grace_s,
                imds_poll_s=imds_poll_s,
                sshd=sshd,
            )
            # No bucket or profile given: AwsCloud finds them in the stack, as after `spotrain init`.
            super().__init__(regions=list(REGIONS), state_dir=self.state_dir, api=api, machines=self._local)
            for record in self._local.files.running():
                self._local.restore(record)
        except BaseException:
            self.close()
            raise

    # -- the moto server and its seed ----------------------------------------------------------

    def _start_moto(self) -> boto3.Session:
        self._lease = stand_in_files.take_lease(self.state_dir)  # before the look: the stand-in waits for it
        standing_in = stand_in_files.live_endpoint(self.state_dir)
        if standing_in is not None:
            return self._join_stand_in(standing_in)
        stand_in_files.drop_lease(self._lease)
        self._lease = None
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
        return self._session

    def _join_stand_in(self, endpoint: str) -> boto3.Session:
        """A detached dry-run run is live: its stand-in holds the moto server (with its seed, its
        patches and the run's group), so this process talks to that one instead of starting its own."""
        self.endpoint, self._joined = endpoint, True
        self._session = fakes.endpoint_session(self.endpoint, self.state_dir / "aws-config")
        self.stack = fakes.deploy_stack(self._session, region=HOME_REGION, bucket=BUCKET, home=self.state_dir)
        return self._session

    @property
    def machines_here(self) -> LocalMachines:
        assert self._local is not None  # set before AwsCloud's __init__ returns
        return self._local

    def close(self) -> None:
        """Stop the watchers, the IMDS servers and the moto server; undo the patches. The instances'
        records and processes stay, for the next LocalCloud on this state directory."""
        if hasattr(self, "machines"):
            super().close()  # AwsCloud's: its machines
        elif self._local is not None:
            self._local.close()  # AwsCloud's __init__ never ran
        if self._server is not None:
            self._server.stop()
            if self._server._server is not None:
                self._server._server.server_close()
            self._server = None
        if self._lease is not None:
            self._lease.unlink(missing_ok=True)
            self._lease = None
        self._stack.close()

    # -- the dry-run's own verbs (its machines') ----------------------------------------------

    @property
    def boot_delay_s(self) -> float:
        return self.machines_here.boot_delay_s

    @property
    def sshd(self) -> SSHTarget | None:
        return self.machines_here.sshd

    def instance_dir(self, instance_id: str) -> Path:
        return self.instances_dir / instance_id

    def inject_interruption(self, instance_id: str) -> dict[str, str]:
        return self.machines_here.inject_interruption(instance_id)

    def injection_env(self, at: str) -> dict[str, str]:
        return self.machines_here.injection_env(at)

    def schedule_interruption(self, instance_id: str, at: str, events_path: str | Path) -> Schedule:
        return self.machines_here.schedule_interruption(instance_id, at, events_path)
