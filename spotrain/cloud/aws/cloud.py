"""`Cloud` on AWS: each verb delegates to the cloud/aws/ function that does it. The same class runs the
dry-run on moto (`cloud/local/cloud.py`): only `machines`, what happens on and to the instances, is
played there (`cloud/base.py`'s `Machines`; EC2's are `cloud/aws/machines.py`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import boto3

from spotrain import contract
from spotrain.cloud import InstanceStatus, SweepResult
from spotrain.cloud.aws import (
    attempt,
    client,
    fis,
    instances,
    lifecycle,
    network,
    ready,
    session,
    stack,
    sweep,
)
from spotrain.cloud.aws.attempt import AttemptRequest, StartedAttempt
from spotrain.cloud.aws.machines import Ec2Machines
from spotrain.cloud.base import Machines, Shell
from spotrain.errors import SpotrainError
from spotrain.targets import SSHTarget, Target

SSH_USER = "ubuntu"  # the Ubuntu DLAMIs' login user, for an instance launched without the ssh-user tag


def ssh_user(status: InstanceStatus) -> str:
    """The login user of the instance's image (Amazon Linux's is ec2-user), from the tag put at launch."""
    return status.tags.get(instances.TAG_SSH_USER) or SSH_USER


class AwsCloud:
    """Spot instances in `regions` (the first is the home region), with `bucket` for checkpoints."""

    name = "aws"

    def __init__(
        self,
        *,
        regions: list[str],
        bucket: str | None = None,
        profile: str | None = None,
        key_file: Path | None = None,
        state_dir: Path | None = None,
        api: boto3.Session | None = None,
        machines: Machines | None = None,
    ) -> None:
        self.regions, self._bucket, self.key_file = list(regions), bucket, key_file
        self.state_dir = Path(state_dir) if state_dir is not None else None  # where the keys are kept
        home = self.regions[0] if self.regions else None
        self._session = api if api is not None else session(profile=profile, region=home)
        self.machines: Machines = machines if machines is not None else Ec2Machines()
        self._profile: str | None = None

    def session(self) -> boto3.Session:
        return self._session

    def start_attempt(self, req: AttemptRequest) -> StartedAttempt:
        if req.ssh_cidr is None and (cidr := self.machines.caller_cidr()) is not None:
            req = replace(req, ssh_cidr=cidr)
        started = attempt.start_attempt(self._session, req)
        if started.key.private_key_path:
            self.key_file = Path(started.key.private_key_path)
        inst = started.instance
        for node_id in inst.node_ids:  # every node of a multi-node attempt is a machine of its own
            self.machines.launched(lifecycle.describe(self._session, region=inst.region, instance_id=node_id))
        return started

    def wait_running(self, region: str, instance_id: str, deadline_s: float) -> InstanceStatus:
        """EC2's waiter, then what the machine's boot still does (nothing on EC2: wait_ready polls it)."""
        end = time.monotonic() + deadline_s
        status = lifecycle.wait(self._session, region=region, instance_id=instance_id, deadline_s=deadline_s)
        if status.state == "running":
            self.machines.booted(status, max(0.0, end - time.monotonic()))
            status = self.describe(region, instance_id)
        return status

    def describe(self, region: str, instance_id: str) -> InstanceStatus:
        status = self.machines.seen(lifecycle.describe(self._session, region=region, instance_id=instance_id))
        if status.state in {"shutting-down", "terminated"}:
            self.machines.ended([instance_id])  # ended by a call not made here (the sweep, a raw client)
        return status

    def find_instances(self, run_id: str) -> list[InstanceStatus]:
        return [
            self.describe(region, inst["InstanceId"])
            for region in self.regions
            for inst in lifecycle.run_instances_live(client(self._session, "ec2", region), run_id)
        ]

    def terminate(self, region: str, instance_ids: list[str]) -> None:
        lifecycle.terminate(self._session, region=region, instance_ids=instance_ids)
        self.machines.ended(instance_ids)

    def sweep(self, run_id: str | None) -> SweepResult:
        """Instances, spot requests, volumes and security groups; for every run (None), spotrain's key
        pairs too (a run's own stay: the user's other runs share them)."""
        leftovers = sweep.find_leftovers(self._session, regions=self.regions, run_id=run_id)
        result = sweep.sweep(self._session, leftovers)
        self.machines.ended(result.terminated)
        if run_id is None:
            for region in self.regions:
                result.deleted.extend(network.delete_key_pairs(client(self._session, "ec2", region)))
        return result

    def target(self, instance: StartedAttempt | InstanceStatus, *, ssh: bool = False) -> Target:
        """SSH to the instance's public address as its image's login user, with the key pair's key (the
        dry-run's machines then reach their shell locally, or through a local sshd)."""
        status = (
            self.describe(instance.instance.region, instance.instance.instance_id)
            if isinstance(instance, StartedAttempt)
            else instance
        )
        key_file = self._key_file(status)
        if not status.public_ip or key_file is None:
            raise SpotrainError(
                f"cannot reach {status.instance_id}: "
                + ("it has no public address" if not status.public_ip else "no private key known"),
                "check that it runs in a subnet with public addresses, and the key in the state directory",
            )
        python = self.python(status.instance_id)
        target = SSHTarget(status.public_ip, ssh_user(status), key_file, status.instance_id, python=python)
        return self.machines.reach(target, ssh=ssh)

    def _key_file(self, target: InstanceStatus) -> Path | None:
        """The private key of the instance's key pair: found in the state directory by the pair's name,
        so a fresh process (`resume`, `logs -f`) can connect too; else the one start_attempt used."""
        if target.key_name and self.state_dir is not None:
            found = network.find_private_key(self.state_dir, target.key_name)
            if found is not None:
                return found
        return self.key_file

    def instance_env(self, instance_id: str) -> dict[str, str]:
        return self.machines.instance_env(instance_id)

    def workdir(self, instance_id: str) -> str:
        return f"{self.machines.home(instance_id)}/spotrain"

    def python(self, instance_id: str) -> str:
        return self.machines.python(instance_id)

    def bucket(self) -> str:
        """--bucket, else the bucket of spotrain's stack in the home region (`spotrain init`)."""
        if self._bucket is None:
            found = (
                stack.find_outputs(self._session, region=self.regions[0], home=self.state_dir)
                if self.regions
                else None
            )
            if found is None:
                raise SpotrainError(
                    f"no checkpoint bucket for region {self.regions[0] if self.regions else '?'}: "
                    "spotrain's stack is not there and no --bucket was given",
                    f"run `spotrain init --region {self.regions[0] if self.regions else 'REGION'}` once, "
                    "or pass --bucket NAME",
                )
            self._bucket = found.bucket
        return self._bucket

    def instance_profile(self) -> str | None:
        """The profile of spotrain's stack in the first of the run's regions that has one (IAM is
        global): the one `spotrain init` stored, else read back from the stack (init ran on another
        machine); None when init ran in none of them."""
        if self._profile is None and self.regions:
            self._profile = stack.find_instance_profile(
                self._session, regions=self.regions, home=self.state_dir
            )
        return self._profile

    def user_data(self, spec: dict) -> str | None:
        return contract.user_data(spec)

    def wait_ready(
        self,
        transport: Shell,
        instance_id: str,
        deadline_s: float,
        poll_s: float = 5.0,
        on_stage: Callable[[str], None] | None = None,
    ) -> dict[str, str]:
        return ready.wait_ready(
            transport,
            boot_dir=self.machines.boot_dir(instance_id),
            deadline_s=deadline_s,
            poll_s=poll_s,
            on_stage=on_stage,
        )

    def send_interruption(self, region: str, instance_id: str, run_id: str) -> fis.Sent:
        """One real spot interruption by FIS, as the stack's FIS role (`spotrain init` made it); where
        FIS is refused, the answer says SIGTERM stands in and why (the caller sends it: cloud/ does not
        reach instances)."""
        found = (
            stack.find_outputs(self._session, region=self.regions[0], home=self.state_dir)
            if self.regions
            else None
        )
        role = found.fis_role_arn if found is not None else None
        return fis.interrupt_or_fallback(
            self._session, region=region, instance_id=instance_id, role_arn=role, run_id=run_id
        )

    def close(self) -> None:
        """Stop what the machines' side runs here (nothing on EC2); boto3 clients close with the process."""
        self.machines.close()
