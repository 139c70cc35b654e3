"""Fixtures for the trainer's tests: the real CLI in a subprocess, a fake IMDSv2 server, a moto S3."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from trainer import events

REPO = Path(__file__).resolve().parents[2]


def read_events(run_dir: Path) -> list[dict]:
    """A run directory's events so far (a torn last line skipped; [] before the file exists)."""
    path = Path(run_dir) / "events.jsonl"
    return events.read_events(path) if path.exists() else []


class Trainer:
    """Runs `python -m trainer.train` (or another trainer module) as users and the controller do."""

    def __init__(self, env: dict[str, str]) -> None:
        self.extra_env = env

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, **self.extra_env}  # read now: fixtures set up later (moto) count too

    def command(self, *args: str, module: str = "trainer.train") -> list[str]:
        return [sys.executable, "-m", module, *args]

    def run(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        timeout: float = 120.0,
        module: str = "trainer.train",
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.command(*args, module=module),
            cwd=REPO,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(
        self, *args: str, env: dict[str, str] | None = None, module: str = "trainer.train"
    ) -> subprocess.Popen:
        return subprocess.Popen(
            self.command(*args, module=module),
            cwd=REPO,
            env={**self.env, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )


@pytest.fixture
def trainer() -> Trainer:
    # OMP_NUM_THREADS: two cores, often two processes; keep them from fighting.
    return Trainer({"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})


class FakeIMDS:
    """IMDSv2 on 127.0.0.1: a token from PUT, then spot/instance-action answers 404 until `arm()`, and
    events/recommendations/rebalance until `arm_rebalance()`. With `only_rank`, each is served to that
    rank's watcher only (told by its User-Agent)."""

    def __init__(self) -> None:
        self.armed = False
        self.notice_time = "2026-11-29T12:00:00Z"  # the notice's `time` field: when AWS will act
        self.only_rank: int | None = None
        self.rebalance_rank: int | None = None
        self.rebalance_armed = False
        self.polls = 0
        self.tokenless = 0
        imds = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_PUT(self) -> None:
                if self.path == "/latest/api/token" and self.headers.get(
                    "X-aws-ec2-metadata-token-ttl-seconds"
                ):
                    self._reply(200, b"token-abc")
                else:
                    self._reply(400, b"")

            def do_GET(self) -> None:
                if self.headers.get("X-aws-ec2-metadata-token") != "token-abc":
                    imds.tokenless += 1
                    return self._reply(401, b"")
                imds.polls += 1
                agent = self.headers.get("User-Agent", "")
                served = imds.armed and (imds.only_rank is None or agent.endswith(f"rank-{imds.only_rank}"))
                if self.path == "/latest/meta-data/spot/instance-action" and served:
                    body = json.dumps({"action": "terminate", "time": imds.notice_time}).encode()
                    return self._reply(200, body)
                rank = imds.rebalance_rank
                recommended = imds.rebalance_armed and (rank is None or agent.endswith(f"rank-{rank}"))
                if self.path == "/latest/meta-data/events/recommendations/rebalance" and recommended:
                    return self._reply(200, json.dumps({"noticeTime": "2026-11-29T11:50:00Z"}).encode())
                self._reply(404, b"Not Found")

            def _reply(self, code: int, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def arm(self, only_rank: int | None = None) -> None:
        self.only_rank = only_rank
        self.armed = True

    def arm_rebalance(self, only_rank: int | None = None) -> None:
        self.rebalance_rank = only_rank
        self.rebalance_armed = True

    def env(self) -> dict[str, str]:
        return {"SPOTRAIN_IMDS_URL": self.url, "SPOTRAIN_IMDS_POLL_S": "0.05"}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def imds():
    server = FakeIMDS()
    yield server
    server.close()


@pytest.fixture
def moto_s3(moto_server, monkeypatch):
    """The shared moto server (tests/conftest.py) with an empty bucket; yields (endpoint, bucket)."""
    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    boto3.client("s3", endpoint_url=moto_server).create_bucket(Bucket="ckpts")
    return moto_server, "ckpts"


class SlowS3:
    """A proxy in front of the moto server that holds every checkpoint upload (a PUT under /ckpt/)
    until the test ends: S3 answering too slowly for the notice's deadline. Other requests pass."""

    def __init__(self, upstream: str) -> None:
        import http.client
        from urllib.parse import urlsplit

        self.held = 0
        self.release = threading.Event()
        target = urlsplit(upstream)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _forward(self) -> None:
                body = self._body()
                if self.command == "PUT" and "/ckpt/" in self.path:
                    proxy.held += 1
                    proxy.release.wait()  # released at teardown: the upload never completes in time
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "transfer-encoding"}
                headers["Content-Length"] = str(len(body))
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "content-length", "connection"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while size := int(self.rfile.readline().split(b";")[0], 16):
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    self.rfile.readline()
                    return b"".join(chunks)
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def slow_s3(moto_s3):
    """(proxy, bucket): the moto bucket of `moto_s3`, reached through a SlowS3 proxy."""
    endpoint, bucket = moto_s3
    proxy = SlowS3(endpoint)
    yield proxy, bucket
    proxy.close()
