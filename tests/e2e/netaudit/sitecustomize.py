"""Loaded at start by every Python process of a test that puts this directory first on PYTHONPATH
(the CLI, the dry-run's trainers, moto's threads): each socket connect or name lookup that would
leave 127.0.0.0/8 is written to $SPOTRAIN_NET_AUDIT and refused, so nothing leaves and the test sees
who tried (a Python audit hook, PEP 578)."""

import ipaddress
import os
import sys

_LOG = os.environ.get("SPOTRAIN_NET_AUDIT")


def _local(host) -> bool:
    if host in (None, "", "localhost") or isinstance(host, bytes) and host == b"localhost":
        return True
    text = host.decode() if isinstance(host, bytes) else str(host)
    try:
        return ipaddress.ip_address(text.split("%")[0]).is_loopback
    except ValueError:
        return False  # a name other than localhost: it would be looked up, maybe outside


def _hook(event: str, args: tuple) -> None:
    if event == "socket.connect":
        address = args[1]
        host = address[0] if isinstance(address, tuple) else None  # AF_UNIX paths are local
    elif event == "socket.getaddrinfo":
        host = args[0]
    else:
        return
    if not _local(host):
        with open(_LOG, "a") as f:
            f.write(f"{os.getpid()} {sys.argv[:3]} {event} {host!r}\n")
        raise OSError(f"spotrain test: no network outside 127.0.0.0/8 ({event} {host!r})")


if _LOG:
    sys.addaudithook(_hook)
