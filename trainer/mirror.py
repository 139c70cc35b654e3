"""Mirror to S3, from the instance: complete checkpoints (files first, LATEST last) and the logs.

It runs on the instance so that nothing is lost while the controller's laptop is closed. Layout under
`s3://BUCKET/PREFIX` (PREFIX is `runs/RUN_ID`):
    ckpt/step-000123/{state.pt, rng.pt, manifest.json}   ckpt/LATEST
    attempts/ATTEMPT_ID/{events.jsonl, train.log, status.json}
    tensorboard/events.out.tfevents.*   (--tensorboard: every attempt's files in one log dir)
boto3 honours AWS_ENDPOINT_URL, which points it at a moto server in tests. Upload failures become
warning events: a mirror that cannot reach S3 must not stop training.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
import time
from pathlib import Path

from trainer import TrainerError, Unavailable
from trainer.checkpoint import LATEST, MANIFEST, step_of, verify
from trainer.events import EventLog

LOG_FILES = ("events.jsonl", "train.log", "status.json")
TB_DIR = "tensorboard"  # trainer/metrics_out.py writes there (--tensorboard)
# How long a resume waits for S3 to answer (SPOTRAIN_S3_RETRY_S) before exiting 69: long enough for an
# endpoint to come back (a restarted dry-run controller brings its S3 back within seconds).
S3_RETRY_S = 120.0


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, prefix without trailing slash); a trailing /ckpt is dropped so either form works."""
    if not uri.startswith("s3://") or len(uri) <= 5:
        raise TrainerError(f"{uri!r} is not an S3 URI", "write it as s3://BUCKET/runs/RUN_ID")
    bucket, _, prefix = uri[5:].partition("/")
    prefix = prefix.strip("/")
    if prefix.endswith("/ckpt") or prefix == "ckpt":
        prefix = prefix[: -len("ckpt")].rstrip("/")
    if not bucket:
        raise TrainerError(f"{uri!r} names no bucket", "write it as s3://BUCKET/runs/RUN_ID")
    return bucket, prefix


def _key(prefix: str, *parts: str) -> str:
    return "/".join(p for p in (prefix, *parts) if p)


def _client():
    import boto3  # only here: the trainer needs boto3 only when it mirrors (every DLAMI ships it)

    return boto3.client("s3")


def _transfer_config():
    """Uploads run on the mirror's own daemon thread, not in a pool: s3transfer's pool threads are not
    daemons, and Python joins them at exit (concurrent.futures' atexit hook), so an upload hung on a
    slow S3 would hold the process past the notice's deadline after the loop gave up on it."""
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(use_threads=False)


def default_attempt_id() -> str:
    return (
        os.environ.get("SPOTRAIN_ATTEMPT")
        or f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{socket.gethostname()}"
    )


class Mirror:
    """A background uploader; `checkpoint()` and `logs()` enqueue, `flush()` waits for the queue."""

    def __init__(
        self, uri: str, run_dir: Path, events: EventLog, keep: int = 3, attempt_id: str | None = None
    ) -> None:
        self.bucket, self.prefix = parse_s3_uri(uri)
        self.run_dir, self.events, self.keep = Path(run_dir), events, keep
        self.attempt_id = attempt_id or default_attempt_id()
        self._s3, self._config = _client(), _transfer_config()
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="s3-mirror", daemon=True)
        self._thread.start()

    def checkpoint(self, directory: Path) -> None:
        self._queue.put(("checkpoint", Path(directory)))

    def logs(self) -> None:
        self._queue.put(("logs", None))

    def flush(self, timeout_s: float = 90.0) -> bool:
        """Wait until everything enqueued so far is uploaded (or failed); False on timeout."""
        done = threading.Event()
        self._queue.put(("barrier", done))
        return done.wait(timeout_s)

    def close(self, timeout_s: float = 90.0) -> None:
        self.logs()
        self.flush(timeout_s)
        self._queue.put(("stop", None))

    def _run(self) -> None:
        while True:
            kind, arg = self._queue.get()
            if kind == "stop":
                return
            if kind == "barrier":
                arg.set()
                continue
            try:
                self._upload_checkpoint(arg) if kind == "checkpoint" else self._upload_logs()
            except Exception as err:  # noqa: BLE001 - an S3 failure is reported, training goes on
                self.events.write(
                    "warning", message=f"mirror to s3://{self.bucket}/{self.prefix} failed: {err}"
                )

    def _upload_checkpoint(self, directory: Path) -> None:
        t0, sent = time.perf_counter(), 0
        base = _key(self.prefix, "ckpt", directory.name)
        for path in sorted(directory.iterdir(), key=lambda p: p.name == MANIFEST):  # manifest after data
            self._s3.upload_file(str(path), self.bucket, f"{base}/{path.name}", Config=self._config)
            sent += path.stat().st_size
        self._s3.put_object(
            Bucket=self.bucket, Key=_key(self.prefix, "ckpt", LATEST), Body=f"{directory.name}\n".encode()
        )
        self._prune_remote(keep_name=directory.name)
        self._upload_tensorboard()  # the curve so far, for `spotrain tensorboard RUN` while it trains
        self.events.write(
            "checkpoint",
            step=step_of(directory.name),
            bytes=sent,
            where="s3",
            upload_s=round(time.perf_counter() - t0, 3),
            uri=f"s3://{self.bucket}/{base}/",
        )

    def _upload_logs(self) -> None:
        self.events.sync()
        for name in LOG_FILES:
            path = self.run_dir / name
            if path.is_file():
                self._s3.upload_file(
                    str(path),
                    self.bucket,
                    _key(self.prefix, "attempts", self.attempt_id, name),
                    Config=self._config,
                )
        self._upload_tensorboard()

    def _upload_tensorboard(self) -> None:
        """RUN_DIR/tensorboard/* to PREFIX/tensorboard/ (one log dir for the run: file names differ by
        attempt, so no attempt overwrites another's)."""
        folder = self.run_dir / TB_DIR
        for path in sorted(folder.iterdir()) if folder.is_dir() else ():
            if path.is_file():
                key = _key(self.prefix, TB_DIR, path.name)
                self._s3.upload_file(str(path), self.bucket, key, Config=self._config)

    def _prune_remote(self, keep_name: str) -> None:
        names = remote_checkpoints(self._s3, self.bucket, self.prefix)
        for old in names[self.keep :]:
            if old == keep_name:
                continue
            keys = [
                o["Key"]
                for page in self._s3.get_paginator("list_objects_v2").paginate(
                    Bucket=self.bucket, Prefix=_key(self.prefix, "ckpt", old) + "/"
                )
                for o in page.get("Contents", [])
            ]
            if keys:
                self._s3.delete_objects(Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in keys]})


def remote_checkpoints(s3, bucket: str, prefix: str) -> list[str]:
    """Checkpoint directory names under the prefix, newest first."""
    names = []
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=_key(prefix, "ckpt") + "/", Delimiter="/"
    )
    for page in pages:
        for common in page.get("CommonPrefixes", []):
            name = common["Prefix"].rstrip("/").rsplit("/", 1)[-1]
            if step_of(name) is not None:
                names.append(name)
    return sorted(names, key=step_of, reverse=True)


def restore(uri: str, local_root: Path, events: EventLog) -> Path | None:
    """Download the newest intact checkpoint under the URI into `local_root` (LATEST's first, then
    older ones, each checked against its manifest); its local directory, or None when S3 has none."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, prefix = parse_s3_uri(uri)
    s3 = _client()
    deadline = time.monotonic() + float(os.environ.get("SPOTRAIN_S3_RETRY_S", S3_RETRY_S))
    warned = False
    while True:
        try:
            names = remote_checkpoints(s3, bucket, prefix)
            try:
                key = _key(prefix, "ckpt", LATEST)
                latest = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode().strip()
            except ClientError as err:
                if _unavailable(err):
                    raise
                latest = ""
            break
        except (BotoCoreError, ClientError) as err:
            if not _unavailable(err):
                raise TrainerError(
                    f"cannot read {uri}: {err}", "check the URI, the credentials and the endpoint"
                ) from None
            if not warned:
                events.write("warning", message=f"cannot reach {uri} ({err}); retrying until it answers")
                warned = True
            if time.monotonic() > deadline:
                raise Unavailable(
                    f"cannot reach {uri}: {err}",
                    "S3 or its endpoint did not answer; the controller starts the trainer again",
                ) from None
            time.sleep(1.0)  # a short outage (an endpoint restarting, a network blip): ask again
    order = ([latest] if latest in names else []) + [n for n in names if n != latest]
    for name in order:
        directory = _download(s3, bucket, _key(prefix, "ckpt", name), Path(local_root) / name)
        problem = verify(directory)
        if problem is None:
            (Path(local_root) / LATEST).write_text(name + "\n", encoding="utf-8")
            return directory
        events.write(
            "warning", message=f"checkpoint {uri.rstrip('/')}/{name} skipped: {problem}", checkpoint=name
        )
    return None


def _download(s3, bucket: str, key_prefix: str, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key_prefix + "/"):
        for obj in page.get("Contents", []):
            s3.download_file(bucket, obj["Key"], str(directory / obj["Key"].rsplit("/", 1)[-1]))
    return directory


def _unavailable(err: Exception) -> bool:
    """Errors that say S3 is not answering now, not that the request is wrong: connection failures,
    throttling and 5xx; NoSuchBucket too (a dry-run's S3 restarting comes back without it for a
    moment; on AWS a bucket that vanished is the infrastructure's fault, not the input's)."""
    from botocore.exceptions import ClientError

    if not isinstance(err, ClientError):
        return True  # BotoCoreError: EndpointConnectionError, ConnectTimeout, ReadTimeout, ...
    code = str(err.response.get("Error", {}).get("Code", ""))
    status = int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    return code in {"NoSuchBucket", "SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable"} or (
        status >= 500
    )
