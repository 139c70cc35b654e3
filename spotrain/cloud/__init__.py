"""What a cloud returns: typed records shared by `cloud/aws/` and the dry-run cloud (`cloud/local/`).

No boto3 here. Each record is a frozen dataclass; the cloud modules never print and never exit.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

from spotrain.errors import SpotrainError

TAG_RUN = "spotrain:run"  # on every resource a run creates: instances, volumes, security groups
TAG_OWNER = "spotrain:owner"  # on every resource spotrain creates, key pairs included


def tags(*, run_id: str | None, owner: str) -> list[dict[str, str]]:
    """The tags spotrain puts on what it creates, in boto3's shape."""
    out = [{"Key": TAG_OWNER, "Value": owner}]
    if run_id is not None:
        out.append({"Key": TAG_RUN, "Value": run_id})
    return out


@dataclass(frozen=True)
class ZoneQuote:
    """One zone's spot price for one instance type: now, and its range over the last 24 h."""

    zone: str
    usd_per_hour: float
    low_24h: float
    high_24h: float
    on_demand_usd_per_hour: float

    @property
    def discount(self) -> float:
        """The fraction saved against on-demand (0.7 = 70% cheaper)."""
        return 1.0 - self.usd_per_hour / self.on_demand_usd_per_hour


@dataclass(frozen=True)
class PriceTable:
    instance_type: str
    region: str
    now: datetime
    on_demand_usd_per_hour: float
    on_demand_as_of: str  # the on-demand price's date, and where it comes from
    zones: list[ZoneQuote]  # cheapest first
    on_demand_source: str = "table"  # "pricing-api" (AWS Price List Query API) or "table" (catalog)


@dataclass(frozen=True)
class ImageChoice:
    image_id: str
    name: str
    source: str  # "override" (--ami), "ssm" (the DLAMI parameter) or "describe_images" (the fallback)
    reason: str  # one sentence a user can read: which image and why this one
    root_device_name: str = "/dev/sda1"
    ssh_user: str = "ubuntu"  # the image's login user ("ec2-user" on Amazon Linux)
    torch_pip: str | None = None  # pip requirements the bootstrap installs when the image has no torch


@dataclass(frozen=True)
class KeyPair:
    name: str
    private_key_path: str | None  # None when the user's own public key was imported
    created: bool  # False when an existing key pair was reused


@dataclass(frozen=True)
class SecurityGroup:
    group_id: str
    name: str
    vpc_id: str
    ssh_cidr: str


@dataclass(frozen=True)
class ZoneFailure:
    """Why one zone (or a whole region, zone "*") could not give us an instance."""

    region: str
    zone: str
    code: str  # the AWS error code, or "Quota" / "MaxPrice"
    message: str


@dataclass(frozen=True)
class Quota:
    region: str
    name: str  # e.g. "All P Spot Instance Requests"
    code: str  # e.g. "L-7212CCBC"
    vcpus: float | None  # None when Service Quotas could not say
    in_use_vcpus: int = 0


@dataclass(frozen=True)
class LaunchedInstance:
    instance_id: str
    region: str
    zone: str
    instance_type: str
    spot_usd_per_hour: float | None  # the zone's price when we asked
    tried: list[ZoneFailure] = field(default_factory=list)  # the zones that failed before this one
    peer_ids: tuple[str, ...] = ()  # a multi-node attempt's other nodes (same zone, type, price)

    @property
    def node_ids(self) -> tuple[str, ...]:
        """Every node of the attempt, node 0 (the rendezvous host) first."""
        return (self.instance_id, *self.peer_ids)


class EndKind(str, enum.Enum):
    """Why an instance ended, from its state reason."""

    RUNNING = "running"  # it has not ended
    SPOT_INTERRUPTION = "spot-interruption"  # AWS took the capacity back
    USER = "user"  # someone (spotrain down, the console, the instance's own shutdown) ended it
    ERROR = "error"  # it failed to start or AWS ended it for another reason
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class InstanceStatus:
    instance_id: str
    region: str
    zone: str
    instance_type: str
    state: str  # pending, running, shutting-down, terminated, stopping, stopped
    end: EndKind
    reason_code: str  # e.g. Server.SpotInstanceTermination; "" while running
    reason_message: str
    public_ip: str | None
    launch_time: datetime | None
    spot: bool
    tags: dict[str, str] = field(default_factory=dict)
    key_name: str | None = None  # the EC2 key pair it was launched with (its private key is found by it)
    private_ip: str | None = None  # its address in the VPC: node 0's is a multi-node run's rendezvous


@dataclass(frozen=True)
class Leftover:
    """A resource a run left behind, found by its tag."""

    kind: (
        str  # "instance", "security-group", "volume", "spot-request", "auto-scaling-group", "launch-template"
    )
    region: str
    resource_id: str
    run_id: str
    state: str = ""


@dataclass(frozen=True)
class SweepResult:
    terminated: list[str]
    deleted: list[str]
    failed: list[ZoneFailure]  # resource-level failures, zone holds the resource id


class NoCapacity(SpotrainError):
    """Every zone tried said "not now" (no capacity, the price above --max-price, a spot vCPU quota
    that a just-ended instance still fills: AWS updates it late): trying again later may succeed, so
    --auto-resume waits and retries (run_limits.py) where any other refusal ends the launch."""
