"""The one interface both transports implement, the records they return, and the remote layer's errors.

A transport runs a shell command on "the instance" and reports its exit code and output. `SSHTransport`
(ssh.py) does it over one paramiko connection; `LocalTransport` (local.py) does it with subprocess on
this machine for the dry-run. Everything above (sync, run, logs) is written against `Transport` only,
so it works unchanged on either.
"""

from __future__ import annotations

import contextlib
import hashlib
import shlex
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from spotrain.errors import SpotrainError

# What a command reads on stdin: bytes, or a function that writes into a StdinFeeder (it may be called
# again if the command has to be retried, so it must be able to start over).
Stdin = bytes | Callable[["StdinFeeder"], None] | None
OnOutput = Callable[[bytes], None]

STDERR_TAIL_BYTES = 64 * 1024
FEED_CHUNK = 32 * 1024
DEFAULT_STATE_DIR = "~/.spotrain-remote"


class RemoteError(SpotrainError):
    """Base of the remote layer's errors: each names the host or the command and says what to do."""


class ConnectionLost(RemoteError):
    """The connection dropped under a command. Transient: `Transport.reconnect()` and try again."""


class RemoteTimeout(ConnectionLost):
    """A command ran past its timeout; the connection is presumed half-open and is closed."""


class Unreachable(RemoteError):
    """No SSH session could be opened before the deadline."""


class HostKeyMismatch(RemoteError):
    """The host presented a key that differs from the one pinned for this instance id."""


class AuthFailed(RemoteError):
    """The server rejected the user key."""


class RemoteCommandError(RemoteError):
    """A remote command exited non-zero; carries its exit code and the last lines of its stderr."""

    def __init__(self, message: str, hint: str = "", *, exit_code: int, stderr_tail: str) -> None:
        super().__init__(message, hint)
        self.exit_code = exit_code
        self.stderr_tail = stderr_tail


@dataclass(frozen=True)
class ExecResult:
    """How one command ended. `stdout` is empty when it was streamed to an `on_output` callback."""

    command: str
    exit_code: int
    stdout: bytes
    stderr: bytes
    seconds: float

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def stderr_lines(self, n: int = 10) -> list[str]:
        return self.stderr.decode("utf-8", "replace").splitlines()[-n:]

    def check(self) -> ExecResult:
        """Return self, or raise RemoteCommandError with the exit code and the last stderr lines."""
        if self.exit_code == 0:
            return self
        tail = "\n".join(self.stderr_lines())
        short = self.command if len(self.command) <= 200 else self.command[:200] + "..."
        raise RemoteCommandError(
            f"remote command exited with code {self.exit_code}: {short}"
            + (f"\n{tail}" if tail else " (no stderr)"),
            hint="the lines above are the end of the command's stderr on the instance",
            exit_code=self.exit_code,
            stderr_tail=tail,
        )


@runtime_checkable
class Transport(Protocol):
    """A place to run shell commands: an instance over SSH, or this machine for the dry-run."""

    name: str  # for messages: "ubuntu@1.2.3.4:22 (i-0abc)" or "local:/path"
    python: str  # the interpreter on the far side that runs agent.py
    state_dir: str  # where the agent and the sync caches live on the far side ("~" allowed)
    bytes_sent: int  # every byte put on the wire: command lines and stdin

    def exec(
        self,
        command: str,
        *,
        stdin: Stdin = None,
        timeout: float | None = None,
        on_output: OnOutput | None = None,
    ) -> ExecResult:
        """Run `command` in a POSIX shell. Raises ConnectionLost (or RemoteTimeout) if the link drops."""
        ...

    def reconnect(self) -> None:
        """Open a fresh session after ConnectionLost (a no-op where there is nothing to reopen)."""
        ...

    def close(self) -> None: ...


def state_home() -> Path:
    """The controller's state directory on this machine: $SPOTRAIN_HOME, or ~/.spotrain."""
    from spotrain.settings import load_settings  # pydantic: imported only when a path is needed

    return load_settings().state_dir


def qpath(path: str) -> str:
    """Quote a remote path for the shell, keeping a leading `~` meaning the remote user's home."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


# ---- The agent: a stdlib-only script installed once on the far side, named by its own hash ----

AGENT_SOURCE = (Path(__file__).with_name("agent.py")).read_bytes()
AGENT_DIGEST = hashlib.sha256(AGENT_SOURCE).hexdigest()[:16]
_MISSING = 91  # the launcher's exit code when the agent file is not installed yet


def agent_path(transport: Transport) -> str:
    return f"{transport.state_dir.rstrip('/')}/agent-{AGENT_DIGEST}.py"


def call_agent(
    transport: Transport,
    args: Sequence[str],
    *,
    stdin: Stdin = None,
    timeout: float | None = None,
    on_output: OnOutput | None = None,
) -> ExecResult:
    """Run `agent.py ARGS` on the far side, installing it first if this version is not there yet."""
    path = qpath(agent_path(transport))
    argv = " ".join(shlex.quote(a) for a in args)
    command = f"test -f {path} || exit {_MISSING}; exec {transport.python} -S {path} {argv}"
    result = transport.exec(command, stdin=stdin, timeout=timeout, on_output=on_output)
    if result.exit_code != _MISSING or result.stdout:
        return result
    install_agent(transport)
    return transport.exec(command, stdin=stdin, timeout=timeout, on_output=on_output)


def install_agent(transport: Transport) -> None:
    """Copy agent.py to the far side atomically (a temporary name, then a rename)."""
    path = qpath(agent_path(transport))
    state = qpath(transport.state_dir)
    transport.exec(
        f"mkdir -p {state} && cat > {path}.$$ && mv -f {path}.$$ {path}", stdin=AGENT_SOURCE
    ).check()


class StdinFeeder:
    """Feeds a command's stdin from a background thread, in pieces of FEED_CHUNK, counting bytes. An
    early exit of the command (a closed pipe) ends the feed quietly: its exit code says what happened.
    A producer that waits for the command's output (a dialogue) stops waiting once `ended` is set."""

    def __init__(self, stdin: Stdin, write: Callable[[bytes], None], close: Callable[[], None]) -> None:
        self.stdin, self._write, self._close = stdin, write, close
        self._buf = bytearray()
        self.sent = 0
        self.error: BaseException | None = None
        self.ended = threading.Event()  # set by the transport when the command's output has closed

    def write(self, data: bytes) -> int:
        self._buf += data
        if len(self._buf) >= 8 * FEED_CHUNK:
            self._drain()
        return len(data)

    def tell(self) -> int:
        return self.sent + len(self._buf)

    def _drain(self) -> None:
        view = memoryview(bytes(self._buf))
        self._buf.clear()
        for i in range(
            0, len(view), FEED_CHUNK
        ):  # small pieces: paramiko's sendall copies the rest each turn
            self._write(view[i : i + FEED_CHUNK])
            self.sent += len(view[i : i + FEED_CHUNK])

    def raise_own_error(self) -> None:
        """Re-raise a failure of the stdin producer itself; a closed pipe is the command's to explain."""
        if self.error is not None and not isinstance(self.error, OSError | EOFError):
            raise self.error

    def run(self) -> None:
        try:
            if isinstance(self.stdin, bytes | bytearray):
                self.write(self.stdin)
            elif self.stdin is not None:
                self.stdin(self)  # type: ignore[arg-type]
            self._drain()
        except Exception as err:  # noqa: BLE001 - handed to the caller's thread by raise_own_error()
            self.error = err
        finally:
            with contextlib.suppress(OSError, EOFError):
                self._close()
