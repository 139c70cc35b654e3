"""The run's S3 prefix as the trainer's mirror leaves it: checkpoints, LATEST, each attempt's logs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spotrain.cloud.aws import storage
from spotrain.errors import SpotrainError

B = "spotrain-test-bucket"


@pytest.fixture
def s3(aws):
    client = aws.client("s3", region_name="us-east-1")
    client.create_bucket(Bucket=B)

    def put(key: str, body: bytes | str) -> None:
        client.put_object(Bucket=B, Key=f"runs/r1/{key}", Body=body)

    for step in (100, 200):
        put(f"ckpt/step-{step:06d}/state.pt", b"x" * step)
        put(f"ckpt/step-{step:06d}/manifest.json", b"{}")
    put("ckpt/step-000300/state.pt", b"partial")  # being uploaded: no manifest yet
    put("ckpt/LATEST", "step-000200\n")
    events = [{"t": 1.0, "kind": "start"}, {"t": 2.0, "kind": "eval", "top1": 0.5}]
    put("attempts/a1/events.jsonl", "\n".join(json.dumps(e) for e in events) + '\n{"t": 3.0, "ki')
    put("attempts/a1/train.log", "step 1 loss 2.3\n")
    put("attempts/a1/status.json", '{"state": "interrupted"}')
    put("attempts/a2/events.jsonl", json.dumps({"t": 4.0, "kind": "start"}) + "\n")
    return aws


def test_checkpoints_and_latest(s3) -> None:
    ckpts = storage.list_checkpoints(s3, bucket=B, run_id="r1")
    assert [(c.name, c.step, c.complete) for c in ckpts] == [
        ("step-000100", 100, True),
        ("step-000200", 200, True),
        ("step-000300", 300, False),
    ]
    assert ckpts[1].bytes == 202
    assert storage.read_latest(s3, bucket=B, run_id="r1") == "step-000200"
    assert storage.read_latest(s3, bucket=B, run_id="nope") is None


def test_every_attempts_events_and_logs(s3, tmp_path: Path) -> None:
    logs = storage.fetch_all(s3, bucket=B, run_id="r1", dest=tmp_path)
    assert [a.attempt_id for a in logs] == ["a1", "a2"]
    a1, a2 = logs
    assert [e["kind"] for e in a1.events] == ["start", "eval"] and a1.skipped_lines == 1  # the torn line
    assert a1.train_log.startswith("step 1") and a1.status == {"state": "interrupted"}
    assert (tmp_path / "a1" / "train.log").read_text() == "step 1 loss 2.3\n"
    assert a2.status is None and a2.train_log == "" and set(a2.files) == {"events.jsonl"}


def test_missing_bucket_and_bad_uri(aws) -> None:
    with pytest.raises(SpotrainError, match="'no-such-bucket'"):
        storage.list_checkpoints(aws, bucket="no-such-bucket", run_id="r1")
    assert storage.parse_s3_uri("s3://my-bucket/runs/r1") == ("my-bucket", "runs/r1")
    with pytest.raises(SpotrainError, match="'http://x'"):
        storage.parse_s3_uri("http://x")
