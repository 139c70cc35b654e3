"""SSH to an instance with paramiko: retry while it boots, pin its host key, run commands.

`connect()` keeps trying until a deadline through what a booting machine says (connection refused,
timed out, reset, no banner yet, and, for `auth_retry_s` seconds, an auth rejection while cloud-init
has not installed the key). A host key is pinned per instance id on first use, in
`$SPOTRAIN_HOME/known_hosts/<instance id>`; a different key for the same id is refused at once.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import re
import select
import socket
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import paramiko

from spotrain.errors import SpotrainError
from spotrain.remote.base import (
    DEFAULT_STATE_DIR,
    STDERR_TAIL_BYTES,
    AuthFailed,
    ConnectionLost,
    ExecResult,
    HostKeyMismatch,
    OnOutput,
    RemoteTimeout,
    Stdin,
    StdinFeeder,
    Unreachable,
    state_home,
)
from spotrain.targets import SSHTarget

# paramiko logs each failed attempt with a traceback; while a machine boots those are expected, so they
# go to our own logger, silent unless the application configures logging.
_LOG_CHANNEL = "spotrain.remote.paramiko"
logging.getLogger("spotrain.remote").addHandler(logging.NullHandler())

_INSTANCE_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
# Faster than paramiko's default (aes128-ctr + a separate HMAC) and supported by every OpenSSH >= 6.2.
_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr", "aes256-ctr")


def load_key(path: Path) -> paramiko.PKey:
    """The private key at `path`, refusing one that others can read (as OpenSSH does)."""
    path = Path(path).expanduser()
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        raise SpotrainError(
            f"SSH key file {path} does not exist", hint="pass the private key of the instance's key pair"
        ) from None
    if mode & 0o077:
        raise SpotrainError(
            f"SSH key file {path} is readable by others (mode {mode:04o}); ssh refuses such keys",
            hint=f"chmod 600 {path}",
        )
    try:
        return paramiko.PKey.from_path(path)
    except paramiko.PasswordRequiredException:
        raise SpotrainError(
            f"SSH key file {path} is encrypted with a passphrase",
            hint="use a key without a passphrase (the key pair spotrain creates has none)",
        ) from None
    except (paramiko.SSHException, ValueError) as err:
        raise SpotrainError(
            f"SSH key file {path} is not a private key paramiko can read: {err}",
            hint="use an OpenSSH or PEM ed25519, ECDSA or RSA private key",
        ) from None


class HostKeyPins:
    """One file per instance id holding `<key type> <base64>` of the host key first seen."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or state_home() / "known_hosts"

    def path(self, instance_id: str) -> Path:
        if not _INSTANCE_ID.match(instance_id):
            raise SpotrainError(
                f"instance id {instance_id!r} is not valid", hint="letters, digits, '.', '_' and '-' only"
            )
        return self.directory / instance_id

    def pinned(self, instance_id: str) -> tuple[str, str] | None:
        try:
            kind, b64 = self.path(instance_id).read_text().split()[:2]
        except (FileNotFoundError, ValueError):
            return None
        return kind, b64

    def check(self, target: SSHTarget, key: paramiko.PKey) -> bool:
        """True if the key matches the pin, False if there is no pin yet; raises on a mismatch."""
        pin = self.pinned(target.instance_id)
        if pin is None:
            return False
        if pin == (key.get_name(), key.get_base64()):
            return True
        old = paramiko.PKey.from_type_string(pin[0], base64.b64decode(pin[1]))
        raise HostKeyMismatch(
            f"host key of {target} changed: pinned {old.fingerprint}, offered {key.fingerprint}; refusing",
            hint="a changed key means another machine or a man in the middle. If this instance id was "
            f"really reinstalled, delete {self.path(target.instance_id)} and connect again",
        )

    def pin(self, instance_id: str, key: paramiko.PKey) -> None:
        path = self.path(instance_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(f"{key.get_name()} {key.get_base64()}\n")
        tmp.replace(path)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard `connect` tries: until `deadline_s`, with backoff from 0.25 s doubling to `max_backoff_s`."""

    deadline_s: float = 300.0
    attempt_timeout_s: float = 10.0  # TCP connect, banner, key exchange and auth, each attempt
    max_backoff_s: float = 5.0
    auth_retry_s: float = 0.0  # retry auth rejections this long (cloud-init may not have the key yet)


def connect(
    target: SSHTarget,
    *,
    retry: RetryPolicy | None = None,
    keepalive_s: float = 15.0,
    python: str | None = None,
    state_dir: str | None = None,
    pins: HostKeyPins | None = None,
) -> SSHTransport:
    """An open SSH session to `target`, or Unreachable / AuthFailed / HostKeyMismatch. `python` and
    `state_dir` default to the target's."""
    transport = SSHTransport(
        target,
        retry=retry or RetryPolicy(),
        keepalive_s=keepalive_s,
        python=python or target.python,
        state_dir=state_dir or target.state_dir or DEFAULT_STATE_DIR,
        pins=pins,
    )
    transport.reconnect()
    return transport


class SSHTransport:
    """One paramiko connection; every `exec` is a new channel on it. Not for use from two threads."""

    def __init__(
        self,
        target: SSHTarget,
        *,
        retry: RetryPolicy,
        keepalive_s: float = 15.0,
        python: str = "python3",
        state_dir: str = DEFAULT_STATE_DIR,
        pins: HostKeyPins | None = None,
    ) -> None:
        self.target = target
        self.name = str(target)
        self.python = python
        self.state_dir = state_dir
        self.retry = retry
        self.keepalive_s = keepalive_s
        self.pins = pins or HostKeyPins()
        self.key = load_key(target.key_file)  # before any network: a bad key file fails at once
        self.bytes_sent = 0
        self.connects = 0  # sessions opened so far (1 + reconnects)
        self._t: paramiko.Transport | None = None

    @property
    def sock(self) -> socket.socket | None:
        """The current TCP socket (tests shut it down to simulate a dropped network)."""
        return self._t.sock if self._t is not None else None  # type: ignore[return-value]

    def reconnect(self) -> None:
        """Close what is left of the session and open a new one under the retry policy."""
        self.close()
        self._t = _open_with_retry(self.target, self.key, self.pins, self.retry)
        self._t.set_keepalive(int(self.keepalive_s))
        self.connects += 1

    def close(self) -> None:
        if self._t is not None:
            self._t.close()
            self._t = None

    def exec(
        self,
        command: str,
        *,
        stdin: Stdin = None,
        timeout: float | None = None,
        on_output: OnOutput | None = None,
    ) -> ExecResult:
        start = time.monotonic()
        t = self._t
        if t is None or not t.is_active():
            raise ConnectionLost(f"no SSH session to {self.name}", hint="reconnect and try again")
        try:
            chan = t.open_session(timeout=self.retry.attempt_timeout_s)
            chan.exec_command(command)
        except (paramiko.SSHException, OSError, EOFError) as err:
            raise ConnectionLost(f"SSH session to {self.name} failed: {err}", hint="reconnect") from None
        self.bytes_sent += len(command.encode())
        feeder = StdinFeeder(stdin, chan.sendall, chan.shutdown_write)
        thread = threading.Thread(target=feeder.run, daemon=True)
        thread.start()
        try:
            out, err = _pump(chan, t, start + timeout if timeout else None, on_output)
        except RemoteTimeout:
            self.close()  # a command that hangs past its timeout most likely sits on a dead link
            raise RemoteTimeout(
                f"{self.name}: no answer within {timeout:g} s to: {command[:200]}",
                hint="the connection was closed; reconnect and try again",
            ) from None
        finally:
            feeder.ended.set()
            chan.close()
            thread.join(5)
            self.bytes_sent += feeder.sent
        if chan.exit_status == -1 and not t.is_active():
            raise ConnectionLost(
                f"connection to {self.name} dropped during: {command[:200]}", hint="reconnect"
            )
        feeder.raise_own_error()
        return ExecResult(command, chan.exit_status, out, err, time.monotonic() - start)


def _pump(
    chan: paramiko.Channel, t: paramiko.Transport, deadline: float | None, on_output: OnOutput | None
) -> tuple[bytes, bytes]:
    """Read the channel's stdout and stderr until it closes or the connection dies."""
    out, err = bytearray(), bytearray()
    while True:
        if chan.recv_ready():
            data = chan.recv(1 << 16)
            if on_output is not None:
                on_output(data)
            else:
                out.extend(data)
        elif chan.recv_stderr_ready():
            err.extend(chan.recv_stderr(1 << 16))
            if len(err) > 2 * STDERR_TAIL_BYTES:
                del err[:-STDERR_TAIL_BYTES]
        elif chan.closed or not t.is_active():
            return bytes(out), bytes(err[-STDERR_TAIL_BYTES:])
        else:
            wait = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
            if wait <= 0:
                raise RemoteTimeout("timeout")
            select.select([chan], [], [], wait)


# ---- Opening a session -----------------------------------------------------------------------


def _open_with_retry(
    target: SSHTarget, key: paramiko.PKey, pins: HostKeyPins, policy: RetryPolicy
) -> paramiko.Transport:
    start = time.monotonic()
    deadline, auth_until = start + policy.deadline_s, start + policy.auth_retry_s
    delay, attempts, last = 0.25, 0, "no attempt made"
    while True:
        attempts += 1
        timeout = max(0.2, min(policy.attempt_timeout_s, deadline - time.monotonic()))
        try:
            return _open_once(target, key, pins, timeout)
        except paramiko.AuthenticationException as err:
            if time.monotonic() >= auth_until:
                raise AuthFailed(
                    f"{target} rejected the key {target.key_file} for user {target.user!r} ({err})",
                    hint="check that the key file is the private half of the instance's key pair "
                    "and that the user is the AMI's login user (ubuntu on the Deep Learning AMI)",
                ) from None
            last = f"authentication rejected: {err}"
        except paramiko.IncompatiblePeer as err:
            raise HostKeyMismatch(
                f"{target} offers no host key of the pinned type {pins.pinned(target.instance_id)}: {err}",
                hint=f"if this instance id was really reinstalled, delete {pins.path(target.instance_id)}",
            ) from None
        except (OSError, EOFError, paramiko.SSHException) as err:
            last = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
        wait = min(delay, deadline - time.monotonic())
        if wait <= 0:
            raise Unreachable(
                f"could not open an SSH session to {target} within {policy.deadline_s:g} s "
                f"({attempts} attempts); last error: {last}",
                hint="check that the instance is running, that its security group lets in port "
                f"{target.port} from this address, and the host name",
            )
        time.sleep(wait)
        delay = min(delay * 2, policy.max_backoff_s)


def _open_once(
    target: SSHTarget, key: paramiko.PKey, pins: HostKeyPins, timeout: float
) -> paramiko.Transport:
    sock = socket.create_connection((target.host, target.port), timeout=timeout)
    _tcp_keepalive(sock)
    t = paramiko.Transport(sock)
    t.set_log_channel(_LOG_CHANNEL)
    try:
        t.banner_timeout = t.handshake_timeout = t.auth_timeout = timeout
        options = t.get_security_options()
        options.ciphers = tuple(c for c in _CIPHERS if c in options.ciphers)
        pin = pins.pinned(target.instance_id)
        if pin is not None:  # negotiate the pinned key's type, so the comparison is like for like
            options.key_types = (pin[0],) if pin[0] != "ssh-rsa" else ("rsa-sha2-512", "rsa-sha2-256")
        t.start_client(timeout=timeout)  # returns quietly on timeout, hence the check below
        if not t.initial_kex_done:
            raise paramiko.SSHException(f"no SSH banner and key exchange within {timeout:.2g} s")
        server_key = t.get_remote_server_key()
        known = pins.check(target, server_key)
        t.auth_publickey(target.user, key)
        if not known:
            pins.pin(target.instance_id, server_key)
        return t
    except BaseException:
        t.close()
        raise


def _tcp_keepalive(sock: socket.socket) -> None:
    """Let the kernel notice a dead peer in about a minute instead of hours."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, name):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
