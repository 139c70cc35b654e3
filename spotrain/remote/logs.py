"""Follow a growing file on the instance by byte offset, losing and repeating nothing across reconnects.

Each poll reads from the offset just past the last complete line handed out (`tail -c +N | head -c M`);
a partial last line stays unread until its newline arrives. When the connection drops, the transport
reconnects and the next poll starts again from that offset, so every line comes out exactly once, in
order. Files are assumed append-only (train.log and events.jsonl are).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from spotrain.remote.base import ConnectionLost, Transport, qpath

T = TypeVar("T")
CHUNK = 1 << 20
MAX_LINE = 64 << 20  # a "line" longer than this is handed out in pieces


@dataclass(frozen=True)
class LogLine:
    text: str  # without its newline
    offset: int  # byte offset of its first byte in the file
    end: int  # offset just past its newline: where to resume from


@dataclass(frozen=True)
class Event:
    """One line of events.jsonl, parsed. `kind` is "malformed" for a line that is not a JSON object."""

    kind: str
    t: float | None
    data: dict[str, Any]
    offset: int
    end: int


def follow(
    transport: Transport,
    path: str,
    *,
    offset: int = 0,
    poll_s: float = 1.0,
    stop: Callable[[], bool] | None = None,
    timeout_s: float = 30.0,
) -> Iterator[LogLine]:
    """Yield each complete line of `path` from `offset` on, waiting for more.

    Ends when `stop()` (asked when the file has nothing new) returns True: the file is then read once
    more to its end, a final unterminated line included. Without `stop` it never ends on its own.
    """
    chunk, finishing = CHUNK, False
    while True:
        data = _retrying(transport, lambda n=chunk, o=offset: read_bytes(transport, path, o, n, timeout_s))
        start = 0
        while (nl := data.find(b"\n", start)) >= 0:
            yield LogLine(data[start:nl].decode("utf-8", "replace"), offset + start, offset + nl + 1)
            start = nl + 1
        offset += start
        if len(data) == chunk:  # more is waiting
            if start == 0:
                if chunk >= MAX_LINE:
                    yield LogLine(data.decode("utf-8", "replace"), offset, offset + len(data))
                    offset += len(data)
                else:
                    chunk *= 2
            continue
        if finishing:
            if start < len(data):
                yield LogLine(data[start:].decode("utf-8", "replace"), offset, offset + len(data) - start)
            return
        if start == 0 and stop is not None and _retrying(transport, stop):
            finishing = True
            continue
        if start == 0:
            time.sleep(poll_s)


def follow_events(
    transport: Transport,
    path: str,
    *,
    offset: int = 0,
    poll_s: float = 1.0,
    stop: Callable[[], bool] | None = None,
    timeout_s: float = 30.0,
) -> Iterator[Event]:
    """`follow` on events.jsonl, each line parsed."""
    for line in follow(transport, path, offset=offset, poll_s=poll_s, stop=stop, timeout_s=timeout_s):
        yield parse_event(line)


def parse_event(line: LogLine) -> Event:
    try:
        data = json.loads(line.text)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return Event("malformed", None, {"line": line.text}, line.offset, line.end)
    t = data.get("t")
    return Event(
        str(data.get("kind", "")),
        float(t) if isinstance(t, int | float) else None,
        data,
        line.offset,
        line.end,
    )


def read_bytes(transport: Transport, path: str, offset: int, size: int, timeout_s: float = 30.0) -> bytes:
    """Up to `size` bytes of `path` from `offset`; empty if the file does not exist yet."""
    p = qpath(path)
    result = transport.exec(
        f"test -e {p} || exit 0; tail -c +{offset + 1} {p} | head -c {size}", timeout=timeout_s
    )
    if result.exit_code == 0 and result.stderr:  # tail failed (permissions, I/O) and head did not
        result = dataclasses.replace(result, exit_code=1)
    return result.check().stdout


def read_tail(transport: Transport, path: str, lines: int = 20) -> list[str]:
    """The last `lines` lines of `path` (empty if it does not exist): for saying how a run ended."""
    p = qpath(path)
    out = transport.exec(f"test -e {p} || exit 0; tail -n {int(lines)} {p}", timeout=60).check().stdout
    return out.decode("utf-8", "replace").splitlines()


def _retrying(transport: Transport, fn: Callable[[], T]) -> T:
    """Run fn; on a dropped connection, reconnect (under the transport's retry policy) and run it again."""
    while True:
        try:
            return fn()
        except ConnectionLost:
            transport.reconnect()
