"""A dry-run instance's metadata service, and when to interrupt it.

`FakeImds` is IMDSv2 on 127.0.0.1 for one instance: a token from `PUT /latest/api/token`, then
`GET /latest/meta-data/spot/instance-action` answers 404 until a notice is posted, as EC2 does in the
two minutes before it takes a spot instance back. `Schedule` reads `--inject-interruption AT`:
`step:30` or `50%` (pinned to the trainer's progress: the trainer raises the notice at that step) or
`20s` (seconds after the attempt's first `step` event, posted here by the clock).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from spotrain.errors import SpotrainError

ACTION_PATH = "/latest/meta-data/spot/instance-action"
# EC2's rebalance recommendation: 404 until EC2 sees elevated interruption risk, then
# {"noticeTime": ...} (EC2 User Guide, "EC2 instance rebalance recommendations").
REBALANCE_PATH = "/latest/meta-data/events/recommendations/rebalance"
TRAINER_INJECT_ENV = "SPOTRAIN_NOTICE_AT"  # trainer/spot.py's INJECT_ENV (the contract's fault injection)


class FakeImds:
    """IMDSv2 for one dry-run instance, served by a daemon thread on 127.0.0.1."""

    def __init__(self, instance_id: str, zone: str, *, port: int = 0) -> None:
        self.instance_id, self.zone = instance_id, zone
        self.notice: dict[str, str] | None = None
        self.rebalance: dict[str, str] | None = None
        self._tokens: set[str] = set()
        self.server = _bind(port, self._handler())
        self.port = int(self.server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self.server.serve_forever, name=f"imds-{instance_id}", daemon=True
        )
        self._thread.start()

    def post_notice(self, when: datetime | None = None) -> dict[str, str]:
        """From now on, spot/instance-action says the instance is terminated at `when` (default: now)."""
        when = when or datetime.now(timezone.utc)
        self.notice = {"action": "terminate", "time": when.strftime("%Y-%m-%dT%H:%M:%SZ")}
        return self.notice

    def post_rebalance(self, when: datetime | None = None) -> dict[str, str]:
        """From now on, events/recommendations/rebalance says EC2 recommended it at `when` (default: now)."""
        when = when or datetime.now(timezone.utc)
        self.rebalance = {"noticeTime": when.strftime("%Y-%m-%dT%H:%M:%SZ")}
        return self.rebalance

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)

    def _answer(self, method: str, path: str, headers: Any) -> tuple[int, bytes]:
        if method == "PUT":
            if path != "/latest/api/token" or not headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                return 400, b""
            token = secrets.token_hex(16)
            self._tokens.add(token)
            return 200, token.encode()
        if headers.get("X-aws-ec2-metadata-token") not in self._tokens:
            return 401, b""
        if path == ACTION_PATH and self.notice is not None:
            return 200, json.dumps(self.notice).encode()
        if path == REBALANCE_PATH and self.rebalance is not None:
            return 200, json.dumps(self.rebalance).encode()
        meta = {
            "/latest/meta-data/instance-id": self.instance_id,
            "/latest/meta-data/placement/availability-zone": self.zone,
        }
        return (200, meta[path].encode()) if path in meta else (404, b"Not Found")

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        imds = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_PUT(self) -> None:
                self._reply(*imds._answer("PUT", self.path, self.headers))

            def do_GET(self) -> None:
                self._reply(*imds._answer("GET", self.path, self.headers))

            def _reply(self, code: int, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler


def _bind(port: int, handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    """A server on `port` (to keep an instance's address across a controller restart), else any port."""
    try:
        return ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError:
        if port == 0:
            raise
        return ThreadingHTTPServer(("127.0.0.1", 0), handler)


@dataclass(frozen=True)
class Schedule:
    """When to interrupt: at training `step`, at `share` of the schedule's steps, or `seconds` after
    training started. The first two are pinned to progress: the trainer raises the notice itself at
    that step (SPOTRAIN_NOTICE_AT), so no machine's speed can make it land late; the instance's IMDS
    then posts it, and the instance is reclaimed, when the trainer's `interruption` event says so.
    `20s` is posted at the IMDS when the clock says, and lands whenever the trainer next polls."""

    text: str
    seconds: float | None = None
    share: float | None = None
    step: int | None = None

    @property
    def pinned(self) -> bool:
        return self.seconds is None

    @classmethod
    def parse(cls, at: str) -> Schedule:
        text = at.strip().lower()
        step = re.fullmatch(r"step:([1-9]\d*)", text)
        if step:
            return cls(text, step=int(step.group(1)))
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|%)\s*", text)
        value = float(m.group(1)) if m else -1.0
        if m is None or (m.group(2) == "%" and not 0 < value < 100):
            raise SpotrainError(
                f"--inject-interruption '{at}' is neither a step, a share of the schedule nor seconds",
                "give a training step, e.g. step:30, a share between 0% and 100%, e.g. 50%, "
                "or seconds after training starts, e.g. 20s",
            )
        if m.group(2) == "s":
            return cls(text, seconds=value)
        return cls(text, share=value / 100.0)


class EventsProgress:
    """Reads a run's events.jsonl as it grows and says whether a `Schedule` is due."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._offset = 0
        self._partial = b""
        self.first_step_t: float | None = None  # the trainer's clock (unix s) at its first step
        self.injected = False  # the trainer stopped for an injected (pinned) notice

    def read(self) -> None:
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return
        self._offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            try:
                self._see(json.loads(line))
            except (ValueError, TypeError, AttributeError):
                continue  # a line that is not an event object is not ours to judge

    def _see(self, event: dict[str, Any]) -> None:
        kind = event.get("kind")
        if kind == "interruption" and event.get("source") == "injected":
            self.injected = True
        elif kind == "step" and self.first_step_t is None:
            self.first_step_t = float(event.get("t") or time.time())

    def due(self, schedule: Schedule, now: float | None = None) -> bool:
        self.read()
        if schedule.pinned:
            return self.injected
        t = time.time() if now is None else now
        return self.first_step_t is not None and t - self.first_step_t >= float(schedule.seconds or 0)


def trainer_pids(home: Path) -> list[int]:
    """Processes started detached under `home` (remote/run.py's RUN/pid) that have not exited."""
    pids = []
    for pid_file in home.rglob("pid"):
        if (pid_file.parent / "exit_code").exists():
            continue
        with contextlib.suppress(OSError, ValueError):
            pid = int(pid_file.read_text().strip())
            os.kill(pid, 0)
            pids.append(pid)
    return pids
