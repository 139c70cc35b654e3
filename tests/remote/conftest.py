"""Fixtures for the remote layer: a real sshd on 127.0.0.1 and both transports."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from spotrain.remote import LocalTransport, RetryPolicy, SSHTarget, SSHTransport, Transport, connect

from .sshd_server import SSHD, Sshd, sshd_available

_counter = iter(range(10**6))


def require_sshd() -> None:
    """Skip without sshd, except where SPOTRAIN_REQUIRE_SSHD=1 (CI): there a missing sshd fails."""
    if sshd_available():
        return
    if os.environ.get("SPOTRAIN_REQUIRE_SSHD") == "1":
        pytest.fail(
            f"SPOTRAIN_REQUIRE_SSHD=1 but there is no sshd at {SSHD} (apt-get install openssh-server)"
        )
    pytest.skip("no sshd here (apt-get install openssh-server); CI runs these with SPOTRAIN_REQUIRE_SSHD=1")


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    require_sshd()
    server = Sshd(tmp_path_factory.mktemp("sshd")).start()
    yield server
    server.stop()


@pytest.fixture
def new_sshd(tmp_path: Path) -> Iterator:
    """A factory of extra servers for tests that start, stop or swap one; all stopped after the test."""
    require_sshd()
    servers: list[Sshd] = []

    def make(port: int | None = None) -> Sshd:
        server = Sshd(tmp_path / f"sshd-{len(servers)}", port=port)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def target_for(server: Sshd, instance_id: str = "i-test") -> SSHTarget:
    return SSHTarget("127.0.0.1", server.user, server.client_key, instance_id, server.port)


def ssh_to(server: Sshd, tmp_path: Path, **retry: float) -> SSHTransport:
    """A connected transport whose agent and caches live under tmp_path (not the real ~)."""
    policy = RetryPolicy(**{"deadline_s": 10.0, **retry})
    return connect(
        target_for(server, f"i-{next(_counter)}"),
        retry=policy,
        python=sys.executable,
        state_dir=str(tmp_path / "remote-state"),
    )


@pytest.fixture
def ssh(sshd: Sshd, tmp_path: Path) -> Iterator[SSHTransport]:
    transport = ssh_to(sshd, tmp_path)
    yield transport
    transport.close()


@pytest.fixture
def local(tmp_path: Path) -> LocalTransport:
    return LocalTransport(tmp_path / "instance", state_dir=str(tmp_path / "remote-state"))


@pytest.fixture(params=["local", "ssh"])
def transport(request: pytest.FixtureRequest) -> Transport:
    """Each test using this runs twice: on the dry-run's local transport and over real SSH."""
    return request.getfixturevalue(request.param)
