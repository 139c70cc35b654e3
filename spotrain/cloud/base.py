"""The one interface the orchestrator drives either cloud through: AWS (`cloud/aws/cloud.py`) or the
dry-run on this machine (`cloud/local/`). Both run the same `cloud/aws/` code for launching; they
differ in where the API lives, how an instance is reached and what environment the trainer gets.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from spotrain.cloud import InstanceStatus, SweepResult
from spotrain.targets import Target

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
        self, transport: Shell, deadline_s: float, *, on_stage: Callable[[str], None] | None = None
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
