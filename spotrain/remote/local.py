"""The dry-run's transport: the "instance" is a directory on this machine and commands run here.

Same interface as `SSHTransport`, so sync, run and logs are exercised unchanged without a network.
Commands run in `sh -c` with HOME set to the instance directory, so `~` paths land inside it.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from spotrain.remote.base import (
    DEFAULT_STATE_DIR,
    STDERR_TAIL_BYTES,
    ExecResult,
    OnOutput,
    RemoteTimeout,
    Stdin,
    StdinFeeder,
)


class LocalTransport:
    """Runs commands on this machine, with `home` (the instance directory) as HOME and working dir."""

    def __init__(
        self,
        home: Path,
        *,
        python: str = sys.executable,
        state_dir: str = DEFAULT_STATE_DIR,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        self.name = f"local:{self.home}"
        self.python = python
        self.state_dir = state_dir
        self.env = {**os.environ, **(env or {}), "HOME": str(self.home)}
        self.bytes_sent = 0

    def exec(
        self,
        command: str,
        *,
        stdin: Stdin = None,
        timeout: float | None = None,
        on_output: OnOutput | None = None,
    ) -> ExecResult:
        start = time.monotonic()
        self.bytes_sent += len(command.encode())
        proc = subprocess.Popen(
            ["/bin/sh", "-c", command],
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=self.home,
            env=self.env,
            start_new_session=True,  # a timeout kills the command's whole group
        )
        feeder = None
        if stdin is not None and proc.stdin is not None:
            feeder = StdinFeeder(stdin, proc.stdin.write, proc.stdin.close)
            thread = threading.Thread(target=feeder.run, daemon=True)
            thread.start()
        try:
            out, err = _pump(proc, start + timeout if timeout else None, on_output)
        except RemoteTimeout:
            _kill_group(proc)
            raise RemoteTimeout(
                f"{self.name}: command ran past its {timeout:g} s timeout: {command[:200]}",
                hint="the command was killed; raise the timeout if it needs longer",
            ) from None
        code = proc.wait()
        if feeder is not None:
            feeder.ended.set()
            thread.join(5)
            self.bytes_sent += feeder.sent
            feeder.raise_own_error()
        return ExecResult(command, 128 - code if code < 0 else code, out, err, time.monotonic() - start)

    def reconnect(self) -> None:
        """Nothing to reopen: this machine does not go away."""

    def close(self) -> None:
        """Nothing to close."""


def _pump(proc: subprocess.Popen, deadline: float | None, on_output: OnOutput | None) -> tuple[bytes, bytes]:
    """Read stdout and stderr until both close; stdout goes to `on_output` when one is given."""
    out, err = bytearray(), bytearray()
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, out)  # type: ignore[arg-type]
    sel.register(proc.stderr, selectors.EVENT_READ, err)  # type: ignore[arg-type]
    while sel.get_map():
        wait = None if deadline is None else deadline - time.monotonic()
        if wait is not None and wait <= 0:
            raise RemoteTimeout("timeout")
        for key, _ in sel.select(wait):
            data = os.read(key.fd, 1 << 16)
            if not data:
                sel.unregister(key.fileobj)
            elif key.data is out and on_output is not None:
                on_output(data)
            else:
                key.data.extend(data)
                if key.data is err and len(err) > 2 * STDERR_TAIL_BYTES:
                    del err[:-STDERR_TAIL_BYTES]
    return bytes(out), bytes(err[-STDERR_TAIL_BYTES:])


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
