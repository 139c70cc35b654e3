"""Who is asking, from where, with which key: key pairs, a security group per run, the caller's /32.

One ed25519 key per user, generated here and saved 0600 in the state directory (or the user's own
public key), imported under a name that carries its fingerprint, so the same key works in every
region and a changed key never collides with an old one. Each run gets its own security group whose
only ingress is SSH from the caller's address (/32, or `--ssh-cidr`).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import ipaddress
import os
import urllib.request
from pathlib import Path
from typing import Any

import boto3
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from spotrain.cloud import TAG_OWNER, TAG_RUN, KeyPair, SecurityGroup, tags
from spotrain.cloud.aws import ClientError, client, error_code, translated
from spotrain.errors import SpotrainError

CHECKIP_URL = "https://checkip.amazonaws.com"  # AWS's own what-is-my-address service
CHECKIP_ENV = "SPOTRAIN_CHECKIP_URL"
SSH_PORT = 22


def parse_ssh_cidr(value: str) -> str:
    """A CIDR for the SSH rule: '203.0.113.7' -> '203.0.113.7/32'; malformed values raise SpotrainError."""
    text = value.strip()
    try:
        net = ipaddress.ip_network(text, strict=True)
    except ValueError as err:
        fixed = ""
        with contextlib.suppress(ValueError):
            fixed = f"; did you mean {ipaddress.ip_network(text, strict=False)}?"
        raise SpotrainError(
            f"--ssh-cidr '{value}' is not a valid CIDR ({err}){fixed}",
            "give an address with its prefix length, e.g. 203.0.113.7/32 (one address) or 203.0.113.0/24",
        ) from None
    if net.version == 6:
        # A default VPC has no IPv6 CIDR block, so its instances get no IPv6 address ("IPv6 support
        # for your VPC", VPC user guide): an IPv6 rule would let nobody in, and SSH would time out.
        raise SpotrainError(
            f"--ssh-cidr '{value}' is IPv6, but instances in a default VPC have no IPv6 address",
            "give this machine's IPv4 address as a /32 (`curl -4 https://checkip.amazonaws.com`), "
            "or leave --ssh-cidr out to use it",
        )
    return str(net)


def caller_cidr(url: str | None = None, timeout_s: float = 5.0) -> str:
    """This machine's public address as a /32, as AWS sees it."""
    url = url or os.environ.get(CHECKIP_ENV) or CHECKIP_URL
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 (a fixed https URL)
            text = resp.read(64).decode("ascii", "replace").strip()
        addr = ipaddress.ip_address(text)
    except (OSError, ValueError) as err:
        raise SpotrainError(
            f"could not find this machine's public address from {url} ({err})",
            "pass --ssh-cidr YOUR.PUBLIC.IP/32",
        ) from None
    return f"{addr}/{addr.max_prefixlen}"


@translated("find who you are in AWS")
# -- key pairs --------------------------------------------------------------------------------


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _local_key(state_dir: Path, owner: str) -> tuple[bytes, Path]:
    """The user's spotrain key: its OpenSSH public line and the 0600 private key file (made once)."""
    path = state_dir / "keys" / f"spotrain-{owner}.pem"
    if path.exists():
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
        key = serialization.load_ssh_private_key(path.read_bytes(), password=None)
    else:
        key = ed25519.Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
        _write_private(path, pem)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return public, path


def _user_key(public_key: Path) -> tuple[bytes, Path | None]:
    try:
        line = public_key.expanduser().read_bytes().strip()
        serialization.load_ssh_public_key(line)
    except (OSError, ValueError, UnsupportedAlgorithm) as err:
        raise SpotrainError(
            f"'{public_key}' is not an OpenSSH public key ({type(err).__name__}: {err})",
            "give the .pub file, e.g. ~/.ssh/id_ed25519.pub (ssh-ed25519 or ssh-rsa)",
        ) from None
    private = public_key.expanduser().with_suffix("")
    return line, (private if private.exists() and private != public_key.expanduser() else None)


def key_name(owner: str, public_line: bytes) -> str:
    blob = base64.b64decode(public_line.split()[1])
    return f"spotrain-{owner}-{hashlib.sha256(blob).hexdigest()[:10]}"


def find_private_key(state_dir: Path, name: str) -> Path | None:
    """The private key in the state directory whose key pair name is `name`: what a process that did not
    launch the instance (`resume`, `logs -f`) connects with. The name carries the key's fingerprint, so
    it is matched by content, not by owner (the file names only the owner)."""
    for path in sorted((Path(state_dir) / "keys").glob("spotrain-*.pem")):
        try:
            key = serialization.load_ssh_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError, UnsupportedAlgorithm):
            continue  # not one of ours, or unreadable: another key may still match
        public = key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        if (
            name.startswith("spotrain-")
            and key_name(name[len("spotrain-") :].rsplit("-", 1)[0], public) == name
        ):
            return path
    return None


@translated("set up the SSH key pair")
def ensure_key_pair(
    sess: boto3.Session, *, region: str, owner: str, state_dir: Path, public_key: Path | None = None
) -> KeyPair:
    """The key pair in `region` for `owner`: spotrain's own key, or `public_key` imported."""
    if public_key is not None:
        line, private = _user_key(public_key)
    else:
        line, private = _local_key(state_dir, owner)
    name = key_name(owner, line)
    ec2 = client(sess, "ec2", region)
    found = ec2.describe_key_pairs(Filters=[{"Name": "key-name", "Values": [name]}])["KeyPairs"]
    if found:
        return KeyPair(name, str(private) if private else None, created=False)
    try:
        ec2.import_key_pair(
            KeyName=name,
            PublicKeyMaterial=line,
            TagSpecifications=[{"ResourceType": "key-pair", "Tags": tags(run_id=None, owner=owner)}],
        )
    except ClientError as err:
        if error_code(err) != "InvalidKeyPair.Duplicate":  # another process imported it meanwhile
            raise
    return KeyPair(name, str(private) if private else None, created=True)


def delete_key_pairs(ec2: Any) -> list[str]:
    """Every key pair spotrain imported in the client's region (tagged with its owner); the private
    keys stay in the state directory, and the next launch imports the public half again."""
    found = ec2.describe_key_pairs(Filters=[{"Name": "tag-key", "Values": [TAG_OWNER]}])["KeyPairs"]
    for key in found:
        ec2.delete_key_pair(KeyName=key["KeyName"])
    return [key["KeyName"] for key in found]


# -- security groups --------------------------------------------------------------------------


def default_vpc(ec2: Any, region: str) -> str:
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
    if not vpcs:
        raise SpotrainError(
            f"region {region} has no default VPC to launch into",
            f"create one with `aws ec2 create-default-vpc --region {region}`",
        )
    return vpcs[0]["VpcId"]


def default_subnets(ec2: Any, vpc_id: str) -> dict[str, str]:
    """Zone -> the default subnet of `vpc_id` there (the one EC2 uses when no subnet is named)."""
    found = ec2.describe_subnets(
        Filters=[{"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "default-for-az", "Values": ["true"]}]
    )["Subnets"]
    return {s["AvailabilityZone"]: s["SubnetId"] for s in found}


def _ssh_permission(cidr: str, run_id: str) -> dict[str, Any]:
    rng = {"Description": f"spotrain {run_id}: SSH from the caller"}
    key, field = ("Ipv6Ranges", "CidrIpv6") if ":" in cidr else ("IpRanges", "CidrIp")
    return {"IpProtocol": "tcp", "FromPort": SSH_PORT, "ToPort": SSH_PORT, key: [{**rng, field: cidr}]}


def _rule(p: dict[str, Any]) -> tuple[Any, ...]:
    cidrs = [r["CidrIp"] for r in p.get("IpRanges", [])] + [r["CidrIpv6"] for r in p.get("Ipv6Ranges", [])]
    groups = [g.get("GroupId") for g in p.get("UserIdGroupPairs", [])]
    return (p.get("IpProtocol"), p.get("FromPort"), p.get("ToPort"), tuple(sorted(cidrs + groups)))


def _find_group(ec2: Any, name: str, vpc_id: str) -> dict[str, Any] | None:
    groups = ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [name]}, {"Name": "vpc-id", "Values": [vpc_id]}]
    )["SecurityGroups"]
    return groups[0] if groups else None


@translated("set up the run's security group")
def ensure_security_group(
    sess: boto3.Session,
    *,
    region: str,
    run_id: str,
    owner: str,
    ssh_cidr: str,
    vpc_id: str | None = None,
    peers: bool = False,
) -> SecurityGroup:
    """The run's security group in `region`: SSH from `ssh_cidr`, and with `peers` (a multi-node run)
    all traffic between the group's own members (torchrun's rendezvous, NCCL/gloo), nothing else.
    Idempotent."""
    cidr = parse_ssh_cidr(ssh_cidr)
    ec2 = client(sess, "ec2", region)
    vpc_id = vpc_id or default_vpc(ec2, region)
    name = f"spotrain-{run_id}"
    group = _find_group(ec2, name, vpc_id)
    if group is None:
        group_id = ec2.create_security_group(
            GroupName=name,
            Description=f"spotrain run {run_id}: SSH from {cidr} only",
            VpcId=vpc_id,
            TagSpecifications=[{"ResourceType": "security-group", "Tags": tags(run_id=run_id, owner=owner)}],
        )["GroupId"]
        stale: list[dict[str, Any]] = []
    else:
        group_id, stale = group["GroupId"], group.get("IpPermissions", [])
    wanted = [_ssh_permission(cidr, run_id)] + ([_peer_permission(group_id, run_id)] if peers else [])
    if sorted(_rule(p) for p in stale) != sorted(_rule(p) for p in wanted):
        if stale:  # a reused group from an earlier launch, when the caller's address was another
            ec2.revoke_security_group_ingress(GroupId=group_id, IpPermissions=stale)
        ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=wanted)
    return SecurityGroup(group_id=group_id, name=name, vpc_id=vpc_id, ssh_cidr=cidr)


def _peer_permission(group_id: str, run_id: str) -> dict[str, Any]:
    # A rule whose source is the group itself admits exactly the instances in it ("Security group
    # rules", VPC user guide: "the security group itself"); -1 is every protocol and port.
    pair = {"GroupId": group_id, "Description": f"spotrain {run_id}: the run's own nodes"}
    return {"IpProtocol": "-1", "UserIdGroupPairs": [pair]}


# -- placement groups -------------------------------------------------------------------------


@translated("set up the run's cluster placement group")
def ensure_placement_group(sess: boto3.Session, *, region: str, run_id: str, owner: str) -> str:
    """The run's cluster placement group in `region` (its nodes close together on the network, as
    multi-node training wants: "Placement strategies", EC2 user guide). Idempotent; returns its name."""
    ec2 = client(sess, "ec2", region)
    name = f"spotrain-{run_id}"
    found = ec2.describe_placement_groups(Filters=[{"Name": "group-name", "Values": [name]}])
    if not found["PlacementGroups"]:
        try:
            ec2.create_placement_group(
                GroupName=name,
                Strategy="cluster",
                TagSpecifications=[
                    {"ResourceType": "placement-group", "Tags": tags(run_id=run_id, owner=owner)}
                ],
            )
        except ClientError as err:
            if error_code(err) != "InvalidPlacementGroup.Duplicate":  # another process made it meanwhile
                raise
    return name


def run_placement_groups(ec2: Any, run_id: str | None) -> list[str]:
    """Placement groups tagged for `run_id` (or for any run when None), by name."""
    flt = (
        {"Name": f"tag:{TAG_RUN}", "Values": [run_id]} if run_id else {"Name": "tag-key", "Values": [TAG_RUN]}
    )
    return [g["GroupName"] for g in ec2.describe_placement_groups(Filters=[flt])["PlacementGroups"]]


def run_group_ids(ec2: Any, run_id: str | None) -> list[str]:
    """Security groups tagged for `run_id` (or for any run when None)."""
    flt = (
        {"Name": f"tag:{TAG_RUN}", "Values": [run_id]} if run_id else {"Name": "tag-key", "Values": [TAG_RUN]}
    )
    pages = ec2.get_paginator("describe_security_groups").paginate(Filters=[flt])
    return [g["GroupId"] for page in pages for g in page["SecurityGroups"]]
