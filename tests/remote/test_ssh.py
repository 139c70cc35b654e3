"""Connecting to a real sshd: retry while it boots, pinned host keys, clear failures."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from spotrain.errors import SpotrainError
from spotrain.remote import (
    AuthFailed,
    ConnectionLost,
    HostKeyMismatch,
    LocalTransport,
    RemoteCommandError,
    RetryPolicy,
    SSHTransport,
    Transport,
    Unreachable,
    connect,
)

from .conftest import ssh_to, target_for
from .sshd_server import free_port, write_keypair


def test_both_transports_implement_the_interface(ssh: SSHTransport, local: LocalTransport) -> None:
    assert isinstance(ssh, Transport) and isinstance(local, Transport)


def test_connect_waits_for_an_sshd_that_starts_3s_later(new_sshd, tmp_path: Path) -> None:
    server = new_sshd()
    timer = threading.Timer(3.0, lambda: server.start(wait=False))
    start = time.monotonic()
    timer.start()
    try:
        transport = ssh_to(server, tmp_path, deadline_s=15.0)
    finally:
        timer.cancel()
    elapsed = time.monotonic() - start
    assert elapsed >= 3.0  # it waited for the server (the deadline bounds the rest; no upper timing)
    assert transport.exec("echo up").stdout == b"up\n"
    transport.close()


def test_a_swapped_host_key_for_the_same_instance_is_refused(new_sshd, tmp_path: Path) -> None:
    server = new_sshd().start()
    target = target_for(server, "i-0swap")
    connect(target, retry=RetryPolicy(deadline_s=5)).close()  # first use: the key is pinned
    server.stop()
    write_keypair(server.host_key)  # same instance id and port, another machine's key
    server.start()
    start = time.monotonic()
    with pytest.raises(HostKeyMismatch) as err:
        connect(target, retry=RetryPolicy(deadline_s=30))
    assert time.monotonic() - start < 3  # refused at once, not retried until the deadline
    assert "i-0swap" in str(err.value) and "changed" in str(err.value)
    assert "known_hosts/i-0swap" in err.value.hint


def test_a_wrong_user_key_fails_fast_with_a_clear_message(sshd, tmp_path: Path) -> None:
    wrong = write_keypair(tmp_path / "not_authorized")
    target = target_for(sshd, "i-0wrongkey")
    target = type(target)(target.host, target.user, wrong, target.instance_id, target.port)
    start = time.monotonic()
    with pytest.raises(AuthFailed) as err:
        connect(target, retry=RetryPolicy(deadline_s=60))
    assert time.monotonic() - start < 3
    assert str(wrong) in str(err.value) and sshd.user in str(err.value)


def test_a_key_file_others_can_read_is_refused_with_the_chmod(sshd, tmp_path: Path) -> None:
    key = tmp_path / "open_key"
    key.write_bytes(sshd.client_key.read_bytes())
    key.chmod(0o644)
    with pytest.raises(SpotrainError) as err:
        connect(_with_key(target_for(sshd), key))
    assert "0644" in str(err.value)
    assert err.value.hint == f"chmod 600 {key}"


def test_a_missing_key_file_is_named(sshd, tmp_path: Path) -> None:
    with pytest.raises(SpotrainError, match="does not exist"):
        connect(_with_key(target_for(sshd), tmp_path / "nope"))


def test_unreachable_after_the_deadline(tmp_path: Path, sshd) -> None:
    port = free_port()  # nothing listens there
    target = _with_port(target_for(sshd, "i-0gone"), port)
    start = time.monotonic()
    with pytest.raises(Unreachable) as err:
        connect(target, retry=RetryPolicy(deadline_s=1.5))
    assert 1.5 <= time.monotonic() - start < 4
    assert f"127.0.0.1:{port}" in str(err.value) and "ConnectionRefused" in str(err.value)


def test_a_server_that_never_sends_its_banner_is_retried_then_unreachable(sshd) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # accepts (in the kernel) and says nothing, like a machine still booting
        target = _with_port(target_for(sshd, "i-0silent"), silent.getsockname()[1])
        start = time.monotonic()
        with pytest.raises(Unreachable) as err:
            connect(target, retry=RetryPolicy(deadline_s=2.0, attempt_timeout_s=0.5))
    assert time.monotonic() - start < 5
    assert "banner" in str(err.value).lower() or "timed out" in str(err.value).lower()


def test_exec_returns_exit_code_output_and_streams(ssh: SSHTransport) -> None:
    chunks: list[bytes] = []
    result = ssh.exec("for i in 1 2 3; do echo $i; done", on_output=chunks.append)
    assert result.exit_code == 0 and b"".join(chunks) == b"1\n2\n3\n" and result.stdout == b""
    assert ssh.exec("cat | wc -c", stdin=b"x" * 300_000).stdout.strip() == b"300000"


def test_a_failing_remote_command_surfaces_its_exit_code_and_stderr(transport: Transport) -> None:
    result = transport.exec(
        "echo working; for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo line$i >&2; done; exit 7"
    )
    assert result.exit_code == 7
    with pytest.raises(RemoteCommandError) as err:
        result.check()
    assert err.value.exit_code == 7
    assert "exited with code 7" in str(err.value)
    assert "line12" in str(err.value) and "line3" in str(err.value) and "line2\n" not in str(err.value)


def test_a_dropped_connection_raises_connection_lost_and_reconnect_recovers(ssh: SSHTransport) -> None:
    ssh.sock.shutdown(socket.SHUT_RDWR)
    with pytest.raises(ConnectionLost):
        ssh.exec("sleep 0.2; echo late")
    ssh.reconnect()
    assert ssh.exec("echo back").stdout == b"back\n"
    assert ssh.connects == 2


def _with_key(target, key: Path):
    return type(target)(target.host, target.user, key, target.instance_id, target.port)


def _with_port(target, port: int):
    return type(target)(target.host, target.user, target.key_file, target.instance_id, port)


def test_auth_rejections_are_retried_while_cloud_init_installs_the_key(new_sshd, tmp_path: Path) -> None:
    server = new_sshd()
    authorized = (server.dir / "authorized_keys").read_bytes()
    (server.dir / "authorized_keys").write_bytes(b"")  # booted, but the key is not there yet
    server.start()
    timer = threading.Timer(1.5, lambda: (server.dir / "authorized_keys").write_bytes(authorized))
    timer.start()
    try:
        start = time.monotonic()
        transport = connect(target_for(server, "i-0boot"), retry=RetryPolicy(deadline_s=15, auth_retry_s=10))
    finally:
        timer.cancel()
    assert time.monotonic() - start >= 1.5
    assert transport.exec("true").exit_code == 0
    transport.close()
