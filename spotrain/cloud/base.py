"""The one interface the orchestrator drives the cloud through: `AwsCloud` (`cloud/aws/cloud.py`), on
real AWS or, for the dry-run, on moto (`cloud/local/cloud.py` is AwsCloud with a moto endpoint). The
two worlds differ only in their `Machines`: what happens on and to an instance (boot, shell, IMDS,
interruption), played by EC2 (`cloud/aws/machines.py`) or on this machine (`cloud/local/machines.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from spotrain.cloud import InstanceStatus, SweepResult
from spotrain.targets import SSHTarget, Target

if TYPE_CHECKING:
    import boto3

    from spotrain.cloud.aws.attempt import AttemptRequest, StartedAttempt
    from spotrain.cloud.aws.fis import Sent


class CommandResult(Protocol):
    """How a command ended, as the remote layer's ExecResult says it (the cloud reads no more)."""

    @property
    def exit_code(self) -> int: ...

    @property
    def stdout(self) -> bytes: ...

    @property
    def stderr(self) -> bytes: ...


class Shell(Protocol):
    """What `wait_ready` needs of a transport (spotrain.remote's, which cloud/ does not import)."""

    def exec(self, command: str, *, timeout: float | None = None) -> CommandResult: ...


class Machines(Protocol):
    """What happens on and to the instances, asked by AwsCloud at the points where EC2 acts by itself."""

    def caller_cidr(self) -> str | None:
        """Where SSH comes from (None: this machine's public address, looked up at launch)."""
        ...

    def launched(self, status: InstanceStatus) -> None:
        """EC2 accepted the instance: it starts to exist as a machine."""
        ...

    def booted(self, status: InstanceStatus, deadline_s: float) -> None:
        """EC2 says running: what the boot still does on the machine (its user data) before it answers."""
        ...

    def seen(self, status: InstanceStatus) -> InstanceStatus:
        """EC2's answer of describe, as the machine is (ended by another process meanwhile)."""
        ...

    def ended(self, instance_ids: list[str]) -> None:
        """EC2 ended them: their processes stop."""
        ...

    def reach(self, target: SSHTarget, *, ssh: bool) -> Target:
        """The instance's shell, given how AWS says to reach it (public address, login user, key)."""
        ...

    def instance_env(self, instance_id: str) -> dict[str, str]: ...

    def python(self, instance_id: str) -> str: ...

    def home(self, instance_id: str) -> str:
        """The login user's home on the instance, as the remote layer writes it (`~`)."""
        ...

    def boot_dir(self, instance_id: str) -> str:
        """Where the bootstrap keeps its log and markers on the instance."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class Cloud(Protocol):
    """Where instances come from. Methods return typed records, never print and never exit."""

    name: str  # "aws" or "dry-run"

    def session(self) -> boto3.Session:
        """A boto3 session for this cloud (the dry-run's points at its moto server)."""
        ...

    def start_attempt(self, req: AttemptRequest) -> StartedAttempt:
        """Plan zones from spot prices, pick the image, check quotas and launch with zone failover."""
        ...

    def wait_running(self, region: str, instance_id: str, deadline_s: float) -> InstanceStatus:
        """Until the instance runs (or ends, or the deadline passes); then how it is."""
        ...

    def describe(self, region: str, instance_id: str) -> InstanceStatus:
        """How the instance is now, and why it ended (EndKind.SPOT_INTERRUPTION after a reclaim)."""
        ...

    def find_instances(self, run_id: str) -> list[InstanceStatus]:
        """The run's instances that have not ended, found by their `spotrain:run` tag (reconcile)."""
        ...

    def terminate(self, region: str, instance_ids: list[str]) -> None: ...

    def sweep(self, run_id: str | None) -> SweepResult:
        """Remove what the run (every run when None) left: instances, security groups, and for every
        run, spotrain's key pairs."""
        ...

    def target(self, instance: StartedAttempt | InstanceStatus, *, ssh: bool = False) -> Target:
        """How to reach the instance (a plain record: `spotrain.remote.connect(target)` opens it)."""
        ...

    def instance_env(self, instance_id: str) -> dict[str, str]:
        """Environment the trainer needs on that instance, beyond the instance's own."""
        ...

    def workdir(self, instance_id: str) -> str:
        """Where spotrain keeps the bundle and the runs on the instance, valid over every transport
        (the dry-run's is inside the instance directory, so a local sshd does not share one HOME)."""
        ...

    def python(self, instance_id: str) -> str:
        """The interpreter that runs the trainer there."""
        ...

    def bucket(self) -> str:
        """The bucket that holds the run's checkpoints and event logs."""
        ...

    def instance_profile(self) -> str | None:
        """The instance profile the instances run as (the infra stack's output), or None when there
        is none (`spotrain init` never ran): the instances then get no AWS credentials of their own."""
        ...

    def user_data(self, spec: dict) -> str | None:
        """What the instance runs at boot (AWS: infra/bootstrap.sh with the run's settings)."""
        ...

    def wait_ready(
        self,
        transport: Shell,
        instance_id: str,
        deadline_s: float,
        *,
        on_stage: Callable[[str], None] | None = None,
    ) -> dict[str, str]:
        """Until the instance's bootstrap says it is ready; what it found (SPOTRAIN_PYTHON, SPOTRAIN_DATA,
        SPOTRAIN_DATA_INIT_S); each new stage it reports on the way (data-s3, data-init 3/8) to `on_stage`."""
        ...

    def send_interruption(self, region: str, instance_id: str, run_id: str) -> Sent:
        """One real spot interruption of the instance (AWS FIS: the IMDS notice, then the reclaim), or,
        where FIS is refused, `Sent("sigterm", why)`: the caller then SIGTERMs the trainer itself."""
        ...

    def close(self) -> None:
        """Stop whatever this object started (servers, threads); instances live on."""
        ...
