"""infra/bootstrap.sh's detached stage, in a temporary root on a moto server: once ready, it fetches the
run's bundle from the run's prefix and starts its supervisor from the bundle, in its own session (the
script returns while the supervisor runs), with the run's bucket, id, region and run directory."""

from __future__ import annotations

import io
import json
import sys
import tarfile
import time
from pathlib import Path

import boto3
import pytest
from infra.test_bootstrap import root, run  # noqa: F401 - the fixture, and the script's runner

SUPERVISOR_STUB = """
import json, os, sys
with open(os.environ["SUPERVISED"] + ".tmp", "w") as f:
    json.dump({"argv": sys.argv[1:], "cwd": os.getcwd()}, f)
os.replace(os.environ["SUPERVISED"] + ".tmp", os.environ["SUPERVISED"])
"""


def bundle_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in {"onboard/__init__.py": "", "onboard/supervisor.py": SUPERVISOR_STUB}.items():
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    return buf.getvalue()


def test_a_ready_detached_instance_starts_its_supervisor_from_the_fetched_bundle(
    root: Path,  # noqa: F811
    moto_server: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="spotrain-b")
    s3.put_object(Bucket="spotrain-b", Key="runs/r7/detached/bundle.tar.gz", Body=bundle_tar())
    marker = root / "supervised.json"
    out = run(
        root,
        SPOTRAIN_PYTHON=sys.executable,
        SPOTRAIN_DETACHED_BUCKET="spotrain-b",
        SPOTRAIN_DETACHED_RUN="r7",
        SPOTRAIN_LOGIN_USER="nobody-here",
        SUPERVISED=str(marker),
    )
    assert out.returncode == 0, out.stderr
    assert (root / "boot" / "ready").exists()
    deadline = time.monotonic() + 15
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # polling for the supervisor's own file, with a deadline
    seen = json.loads(marker.read_text())
    boot = root / "boot"
    assert seen["cwd"] == str(boot / "bundle")
    assert seen["argv"] == [
        "--bucket", "spotrain-b", "--run-id", "r7", "--region", "us-east-1", "--run-dir", str(boot / "runs" / "r7"),
    ]  # fmt: skip
    assert (boot / "stage").read_text().strip() == "detached"
