"""The run's S3 prefix, as the trainer's mirror writes it (ARCHITECTURE.md, the contract):

    s3://BUCKET/runs/RUN_ID/ckpt/step-000123/{state.pt,manifest.json}
    s3://BUCKET/runs/RUN_ID/ckpt/LATEST                     the newest complete checkpoint's name
    s3://BUCKET/runs/RUN_ID/attempts/ATTEMPT_ID/{events.jsonl,train.log,status.json}
    s3://BUCKET/runs/RUN_ID/tensorboard/events.out.tfevents.*   (--tensorboard, every attempt's)

Read-only here: list checkpoints, read LATEST, fetch each attempt's events and logs, fetch the
TensorBoard event files.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from spotrain.cloud.aws import ClientError, client, error_code, translated
from spotrain.errors import SpotrainError

STEP_DIR = re.compile(r"^step-(\d+)$")
ATTEMPT_FILES = ("events.jsonl", "train.log", "status.json")


@dataclass(frozen=True)
class Checkpoint:
    name: str  # step-000123
    step: int
    files: dict[str, int]  # file name -> bytes
    complete: bool  # has its manifest.json (the mirror uploads it with the files; LATEST comes last)

    @property
    def bytes(self) -> int:
        return sum(self.files.values())


@dataclass(frozen=True)
class AttemptLogs:
    attempt_id: str
    events: list[dict[str, Any]]
    train_log: str
    status: dict[str, Any] | None
    skipped_lines: int = 0  # event lines that were not JSON (a torn last line mid-upload)
    files: dict[str, str] = field(default_factory=dict)  # name -> local path, when fetched to a dir


def run_prefix(run_id: str) -> str:
    return f"runs/{run_id}/"


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """'s3://bucket/runs/abc' -> ('bucket', 'runs/abc')."""
    m = re.fullmatch(r"s3://([a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])(?:/(.*))?", uri.strip())
    if not m:
        raise SpotrainError(f"'{uri}' is not an S3 URI", "write it as s3://BUCKET/PREFIX")
    return m.group(1), m.group(2) or ""


def _s3(sess: boto3.Session, region: str | None) -> Any:
    return client(sess, "s3", region or sess.region_name or "us-east-1")


def _list(s3: Any, bucket: str, prefix: str, delimiter: str = "") -> tuple[list[dict], list[str]]:
    """Every object under `prefix` (and the common prefixes, with a delimiter), through the paginator."""
    objects: list[dict] = []
    dirs: list[str] = []
    kwargs = {"Bucket": bucket, "Prefix": prefix, **({"Delimiter": delimiter} if delimiter else {})}
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(**kwargs):
            objects += page.get("Contents", [])
            dirs += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    except ClientError as err:
        if error_code(err) == "NoSuchBucket":
            raise SpotrainError(
                f"S3 bucket '{bucket}' does not exist", "create it with `spotrain init`, or check --bucket"
            ) from err
        raise
    return objects, dirs


def _get(s3: Any, bucket: str, key: str) -> bytes | None:
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as err:
        if error_code(err) in {"NoSuchKey", "404"}:
            return None
        raise


@translated("read an attempt's train.log in S3")
def read_attempt_log(
    sess: boto3.Session,
    *,
    bucket: str,
    run_id: str,
    attempt_id: str,
    start: int = 0,
    region: str | None = None,
) -> bytes:
    """The mirrored train.log of one attempt from byte `start` on: b"" when there is none yet or nothing
    past `start` (S3 answers a range that starts at or past the end with InvalidRange, HTTP 416:
    https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html#API_GetObject_RequestSyntax)."""
    s3 = _s3(sess, region)
    key = f"{run_prefix(run_id)}attempts/{attempt_id}/train.log"
    try:
        ranged = {"Range": f"bytes={start}-"} if start else {}
        return s3.get_object(Bucket=bucket, Key=key, **ranged)["Body"].read()
    except ClientError as err:
        if error_code(err) in {"NoSuchKey", "404", "InvalidRange", "416"}:
            return b""
        raise


@translated("list the run's checkpoints in S3")
def list_checkpoints(
    sess: boto3.Session, *, bucket: str, run_id: str, region: str | None = None
) -> list[Checkpoint]:
    """The run's checkpoints in S3, oldest step first."""
    prefix = f"{run_prefix(run_id)}ckpt/"
    objects, _ = _list(_s3(sess, region), bucket, prefix)
    by_dir: dict[str, dict[str, int]] = {}
    for obj in objects:
        parts = obj["Key"][len(prefix) :].split("/", 1)
        if len(parts) == 2 and STEP_DIR.match(parts[0]):
            by_dir.setdefault(parts[0], {})[parts[1]] = obj["Size"]
    found = [
        Checkpoint(name, int(STEP_DIR.match(name).group(1)), files, "manifest.json" in files)  # type: ignore[union-attr]
        for name, files in by_dir.items()
    ]
    return sorted(found, key=lambda c: c.step)


@translated("read the run's LATEST checkpoint pointer")
def read_latest(sess: boto3.Session, *, bucket: str, run_id: str, region: str | None = None) -> str | None:
    """The name in `ckpt/LATEST` (e.g. 'step-000123'), or None before the first checkpoint."""
    data = _get(_s3(sess, region), bucket, f"{run_prefix(run_id)}ckpt/LATEST")
    if data is None:
        return None
    name = data.decode("utf-8", "replace").strip()
    return name if STEP_DIR.match(name) else None


@translated("list the run's attempts in S3")
def list_attempts(sess: boto3.Session, *, bucket: str, run_id: str, region: str | None = None) -> list[str]:
    prefix = f"{run_prefix(run_id)}attempts/"
    _, dirs = _list(_s3(sess, region), bucket, prefix, delimiter="/")
    return sorted(d[len(prefix) :].rstrip("/") for d in dirs)


def parse_events(data: bytes) -> tuple[list[dict[str, Any]], int]:
    """The events of an `events.jsonl`, and how many lines were not JSON objects."""
    events, bad = [], 0
    for line in data.decode("utf-8", "replace").splitlines():
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(obj, dict):
            events.append(obj)
        else:
            bad += 1
    return events, bad


@translated("fetch an attempt's events and logs from S3")
def fetch_attempt(
    sess: boto3.Session,
    *,
    bucket: str,
    run_id: str,
    attempt_id: str,
    dest: Path | None = None,
    region: str | None = None,
) -> AttemptLogs:
    """One attempt's events, train.log and status.json (each may be missing yet); copies them
    under `dest/ATTEMPT_ID/` when `dest` is given."""
    s3 = _s3(sess, region)
    base = f"{run_prefix(run_id)}attempts/{attempt_id}/"
    raw = {name: _get(s3, bucket, base + name) for name in ATTEMPT_FILES}
    files: dict[str, str] = {}
    if dest is not None:
        folder = dest / attempt_id
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in raw.items():
            if data is not None:
                (folder / name).write_bytes(data)
                files[name] = str(folder / name)
    events, bad = parse_events(raw["events.jsonl"] or b"")
    status = None
    if raw["status.json"]:
        try:
            status = json.loads(raw["status.json"])
        except json.JSONDecodeError:
            status = None
    log = (raw["train.log"] or b"").decode("utf-8", "replace")
    return AttemptLogs(attempt_id, events, log, status, bad, files)


def fetch_all(
    sess: boto3.Session, *, bucket: str, run_id: str, dest: Path | None = None, region: str | None = None
) -> list[AttemptLogs]:
    """Every attempt's events and logs, in attempt-id order."""
    return [
        fetch_attempt(sess, bucket=bucket, run_id=run_id, attempt_id=a, dest=dest, region=region)
        for a in list_attempts(sess, bucket=bucket, run_id=run_id, region=region)
    ]


TENSORBOARD = "tensorboard"  # trainer/metrics_out.py's folder, mirrored as the run's one log dir


@translated("fetch the run's TensorBoard event files from S3")
def fetch_tensorboard(
    sess: boto3.Session, *, bucket: str, run_id: str, dest: Path, region: str | None = None
) -> list[Path]:
    """Every event file under `runs/RUN_ID/tensorboard/`, copied into `dest` (one TensorBoard log dir,
    every attempt's file in it); the local paths, name order. Empty when the run wrote none."""
    s3 = _s3(sess, region)
    prefix = f"{run_prefix(run_id)}{TENSORBOARD}/"
    objects, _ = _list(s3, bucket, prefix)
    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for obj in sorted(objects, key=lambda o: o["Key"]):
        name = obj["Key"][len(prefix) :]
        if not name or "/" in name:
            continue  # only the files the mirror writes, never a path out of `dest`
        data = _get(s3, bucket, obj["Key"])
        if data is not None:
            (dest / name).write_bytes(data)
            paths.append(dest / name)
    return paths
