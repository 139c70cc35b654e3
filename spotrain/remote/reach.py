"""`connect(target)`: open the transport a cloud's target record says (see spotrain/targets.py)."""

from __future__ import annotations

from spotrain.remote import ssh
from spotrain.remote.base import Transport
from spotrain.remote.local import LocalTransport
from spotrain.targets import LocalTarget, Target


def connect(
    target: Target,
    *,
    retry: ssh.RetryPolicy | None = None,
    keepalive_s: float = 15.0,
    python: str | None = None,
    state_dir: str | None = None,
    pins: ssh.HostKeyPins | None = None,
) -> Transport:
    """An SSH session to an SSHTarget, retried while it boots (Unreachable / AuthFailed /
    HostKeyMismatch when it cannot be had), or a LocalTransport in a LocalTarget's directory.
    `python` and `state_dir` override the target's own."""
    if isinstance(target, LocalTarget):
        local = LocalTransport(target.home, python=python or target.python, env=target.env)
        for name in target.unset:
            local.env.pop(name, None)
        if state_dir is not None:
            local.state_dir = state_dir
        return local
    return ssh.connect(
        target, retry=retry, keepalive_s=keepalive_s, python=python, state_dir=state_dir, pins=pins
    )
