"""The machines of real AWS: EC2 boots them, runs their user data and serves their IMDS by itself, so
`AwsCloud` has nothing to play. The dry-run's `cloud/local/machines.py` plays the same points locally.

Every hook is where the two worlds differ, and only there: what happens on and to a machine (its
boot, its shell, its IMDS and Python, its interruption). What is asked of the AWS API stays in
`AwsCloud`, the same calls in both worlds.
"""

from __future__ import annotations

from spotrain.cloud import InstanceStatus
from spotrain.targets import SSHTarget, Target

DLAMI_PYTHON = "/opt/pytorch/bin/python"  # the PyTorch Deep Learning AMI's environment
BOOT_DIR = "/opt/spotrain"  # infra/bootstrap.sh's SPOTRAIN_BOOT_DIR default: its log and markers


class Ec2Machines:
    """Instances EC2 runs: reached over SSH as they are, their own IMDS and credentials."""

    def caller_cidr(self) -> str | None:
        return None  # this machine's public address, looked up by the launch (network.caller_cidr)

    def launched(self, status: InstanceStatus) -> None:
        """EC2 boots it and runs its user data by itself."""

    def booted(self, status: InstanceStatus, deadline_s: float) -> None:
        """EC2's `running` is the boot: the bootstrap's own progress is what `wait_ready` polls."""

    def seen(self, status: InstanceStatus) -> InstanceStatus:
        return status  # EC2's word is the truth

    def ended(self, instance_ids: list[str]) -> None:
        """EC2 stops their processes with them."""

    def reach(self, target: SSHTarget, *, ssh: bool) -> Target:
        return target  # sshd on the instance's public address

    def instance_env(self, instance_id: str) -> dict[str, str]:
        return {}  # the real IMDS, the instance role's credentials, the region from IMDS

    def python(self, instance_id: str) -> str:
        return DLAMI_PYTHON

    def home(self, instance_id: str) -> str:
        return "~"  # the login user's home; the remote layer expands it there

    def boot_dir(self, instance_id: str) -> str:
        return BOOT_DIR

    def close(self) -> None:
        """Nothing runs here for them."""
