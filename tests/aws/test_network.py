"""Key pairs, the run's security group, the caller's address."""

from __future__ import annotations

import http.server
import stat
import threading
from pathlib import Path

import pytest

from spotrain.cloud.aws import network
from spotrain.errors import SpotrainError

R = "us-east-1"


@pytest.mark.parametrize(
    ("value", "cidr"),
    [
        ("203.0.113.7", "203.0.113.7/32"),
        (" 198.51.100.0/24 ", "198.51.100.0/24"),
    ],
)
def test_ssh_cidr_accepted(value: str, cidr: str) -> None:
    assert network.parse_ssh_cidr(value) == cidr


@pytest.mark.parametrize("value", ["2001:db8::1", "2001:db8::/64"])
def test_ipv6_ssh_cidr_is_refused_saying_why(value: str) -> None:
    # A default VPC gives its instances no IPv6 address: such a rule would admit nobody.
    with pytest.raises(SpotrainError) as err:
        network.parse_ssh_cidr(value)
    assert f"'{value}' is IPv6" in err.value.message and "default VPC" in err.value.message
    assert "IPv4" in err.value.hint and "/32" in err.value.hint


@pytest.mark.parametrize("value", ["203.0.113.7/33", "203.0.113.300", "my-laptop", "", "203.0.113.7/24"])
def test_malformed_ssh_cidr_names_the_value(value: str) -> None:
    with pytest.raises(SpotrainError) as err:
        network.parse_ssh_cidr(value)
    assert f"'{value}'" in err.value.message and "/32" in err.value.hint
    if value == "203.0.113.7/24":
        assert "203.0.113.0/24" in err.value.message  # the network it probably meant


def test_caller_cidr_from_a_checkip_service(monkeypatch: pytest.MonkeyPatch) -> None:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"198.51.100.23\n")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv(network.CHECKIP_ENV, f"http://127.0.0.1:{server.server_port}/")
        assert network.caller_cidr() == "198.51.100.23/32"
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(SpotrainError, match="--ssh-cidr"):
        network.caller_cidr(f"http://127.0.0.1:{server.server_port}/", timeout_s=1)


def test_generated_key_is_0600_and_reused_across_calls_and_regions(aws, isolated_env: Path) -> None:
    first = network.ensure_key_pair(aws, region=R, owner="alice", state_dir=isolated_env)
    assert first.created and first.private_key_path is not None
    mode = stat.S_IMODE(Path(first.private_key_path).stat().st_mode)
    assert mode == 0o600 and stat.S_IMODE(Path(first.private_key_path).parent.stat().st_mode) == 0o700
    again = network.ensure_key_pair(aws, region=R, owner="alice", state_dir=isolated_env)
    assert (again.name, again.created) == (first.name, False)
    west = network.ensure_key_pair(aws, region="us-west-2", owner="alice", state_dir=isolated_env)
    assert west.name == first.name and west.created  # the same key, imported in the second region
    ec2 = aws.client("ec2", region_name=R)
    (pair,) = ec2.describe_key_pairs(KeyNames=[first.name])["KeyPairs"]
    assert {"Key": "spotrain:owner", "Value": "alice"} in pair["Tags"]


def test_users_own_public_key(aws, isolated_env: Path, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    pub = tmp_path / "id_ed25519.pub"
    pub.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    )
    pair = network.ensure_key_pair(aws, region=R, owner="bob", state_dir=isolated_env, public_key=pub)
    assert pair.created and pair.private_key_path is None
    assert not (isolated_env / "keys").exists()  # nothing secret written when the user brings a key
    bad = tmp_path / "bad.pub"
    bad.write_text("ssh-rsa not-base64 me@host\n")
    with pytest.raises(SpotrainError, match="bad.pub"):
        network.ensure_key_pair(aws, region=R, owner="bob", state_dir=isolated_env, public_key=bad)


def ingress(aws, group_id: str) -> list[tuple]:
    ec2 = aws.client("ec2", region_name=R)
    (g,) = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"]
    return [
        (p["IpProtocol"], p["FromPort"], p["ToPort"], [r["CidrIp"] for r in p.get("IpRanges", [])])
        for p in g["IpPermissions"]
    ]


def test_security_group_allows_only_ssh_from_one_address(aws) -> None:
    sg = network.ensure_security_group(aws, region=R, run_id="r1", owner="alice", ssh_cidr="203.0.113.7")
    assert ingress(aws, sg.group_id) == [("tcp", 22, 22, ["203.0.113.7/32"])]
    ec2 = aws.client("ec2", region_name=R)
    (g,) = ec2.describe_security_groups(GroupIds=[sg.group_id])["SecurityGroups"]
    assert {(t["Key"], t["Value"]) for t in g["Tags"]} >= {
        ("spotrain:run", "r1"),
        ("spotrain:owner", "alice"),
    }
    # Launching again is idempotent; from a new address the old rule goes.
    same = network.ensure_security_group(aws, region=R, run_id="r1", owner="alice", ssh_cidr="203.0.113.7/32")
    assert same.group_id == sg.group_id and ingress(aws, sg.group_id) == [("tcp", 22, 22, ["203.0.113.7/32"])]
    moved = network.ensure_security_group(aws, region=R, run_id="r1", owner="alice", ssh_cidr="198.51.100.9")
    assert moved.group_id == sg.group_id and ingress(aws, sg.group_id) == [
        ("tcp", 22, 22, ["198.51.100.9/32"])
    ]
    assert network.run_group_ids(ec2, "r1") == [sg.group_id]


def test_malformed_cidr_creates_nothing(aws) -> None:
    with pytest.raises(SpotrainError, match="'0.0.0.0/-1'"):
        network.ensure_security_group(aws, region=R, run_id="r2", owner="alice", ssh_cidr="0.0.0.0/-1")
    assert network.run_group_ids(aws.client("ec2", region_name=R), "r2") == []
