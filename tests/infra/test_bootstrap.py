"""infra/bootstrap.sh in a temporary root: shellcheck clean, and run twice it leaves the same result.
S3 is a moto server on 127.0.0.1 (a fake `aws s3 sync` on boto3, since awscli may not be installed);
mount, mountpoint and nvme are small fakes that log their calls."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from .policy_check import REPO

SCRIPT = REPO / "infra" / "bootstrap.sh"

FAKE_AWS = f"""#!{sys.executable}
# aws s3 sync [--only-show-errors] s3://BUCKET/PREFIX DIR, on boto3 (AWS_ENDPOINT_URL points it at moto)
import os, sys, boto3
args = [a for a in sys.argv[1:] if not a.startswith("--")]
assert args[:2] == ["s3", "sync"], args
bucket, _, prefix = args[2][5:].partition("/")
with open(os.environ["CALLS"], "a") as log:
    log.write("aws " + " ".join(sys.argv[1:]) + "\\n")
s3 = boto3.client("s3")
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
    for obj in page.get("Contents", []):
        dest = os.path.join(args[3], os.path.relpath(obj["Key"], prefix))
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        s3.download_file(bucket, obj["Key"], dest)
"""
FAKE_MOUNT = """#!/usr/bin/env bash
echo "mount $*" >>"$CALLS"; touch "${@: -1}/.mounted"
"""
FAKE_MOUNTPOINT = """#!/usr/bin/env bash
[ -e "${@: -1}/.mounted" ]
"""
FAKE_FIO = """#!/usr/bin/env bash
echo "fio $*" >>"$CALLS"
"""
FAKE_NVME = """#!/usr/bin/env bash
echo "nvme $*" >>"$CALLS"; case "$3" in *nvme1n1) echo "0000: 2f 64 65 76 2f 73 64 66  \\"sdf\\"";; esac
"""


@pytest.fixture
def moto_s3(moto_server: str) -> str:
    return moto_server


def _exe(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    for name in ("bin", "dev", "boot"):
        (tmp_path / name).mkdir()
    _exe(tmp_path / "bin" / "python", "#!/bin/sh\n")
    _exe(tmp_path / "bin" / "aws", FAKE_AWS)
    _exe(tmp_path / "bin" / "mount", FAKE_MOUNT)
    _exe(tmp_path / "bin" / "mountpoint", FAKE_MOUNTPOINT)
    _exe(tmp_path / "bin" / "nvme", FAKE_NVME)
    _exe(tmp_path / "bin" / "fio", FAKE_FIO)
    return tmp_path


def run(root: Path, **env: str) -> subprocess.CompletedProcess[str]:
    b = root / "bin"
    full = {
        **os.environ,
        "CALLS": str(root / "calls.log"),
        "SPOTRAIN_BOOT_DIR": str(root / "boot"),
        "SPOTRAIN_DATA_DIR": str(root / "data"),
        "SPOTRAIN_DEV_DIR": str(root / "dev"),
        "SPOTRAIN_PYTHON": str(b / "python"),
        "SPOTRAIN_AWS": str(b / "aws"),
        "SPOTRAIN_MOUNT": str(b / "mount"),
        "SPOTRAIN_MOUNTPOINT": str(b / "mountpoint"),
        "SPOTRAIN_NVME": str(b / "nvme"),
        "SPOTRAIN_FIO": str(b / "fio"),
        **env,
    }
    return subprocess.run(["bash", str(SCRIPT)], env=full, capture_output=True, text=True, timeout=60)


def tree(root: Path) -> dict[str, bytes]:
    """Every file the script leaves (its append-only log and the fakes' call log aside)."""
    skip = {"bootstrap.log", "calls.log"}
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name not in skip and "bin" not in p.parts
    }


def calls(root: Path) -> list[str]:
    path = root / "calls.log"
    return path.read_text().splitlines() if path.exists() else []


def test_shellcheck_is_clean() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        if os.environ.get("CI"):
            pytest.fail("shellcheck is not installed (.ci/run installs it)")
        pytest.skip("shellcheck is not installed: apt-get install shellcheck")
    done = subprocess.run([shellcheck, str(SCRIPT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_data_from_s3_twice_is_the_same(root: Path, moto_s3: str) -> None:
    env = {"AWS_ENDPOINT_URL": moto_s3, "AWS_EC2_METADATA_DISABLED": "true"}
    s3 = boto3.client("s3", endpoint_url=moto_s3, region_name="us-east-1")
    s3.create_bucket(Bucket="spotrain-data")
    for key in ("data/digits/train.npz", "data/digits/sub/test.npz", "elsewhere/x"):
        s3.put_object(Bucket="spotrain-data", Key=key, Body=key.encode())
    first = run(root, SPOTRAIN_DATA_S3="s3://spotrain-data/data/digits", **env)
    assert first.returncode == 0, first.stderr + (root / "boot" / "bootstrap.log").read_text()
    once = tree(root)
    assert once["data/train.npz"] == b"data/digits/train.npz" and "data/x" not in once
    assert once["data/sub/test.npz"] == b"data/digits/sub/test.npz"
    ready = (root / "boot" / "ready").read_text()
    assert f"SPOTRAIN_PYTHON={root}/bin/python\n" in ready and "SPOTRAIN_DATA_SOURCE=s3://" in ready
    second = run(root, SPOTRAIN_DATA_S3="s3://spotrain-data/data/digits", **env)
    assert second.returncode == 0 and tree(root) == once
    assert len([c for c in calls(root) if c.startswith("aws ")]) == 1  # the rerun copied nothing


def test_snapshot_volume_mounted_once(root: Path) -> None:
    (root / "dev" / "sdf").touch()
    assert run(root).returncode == 0
    once = tree(root)
    assert run(root).returncode == 0 and tree(root) == once
    # mounted, then every block read ahead once (AWS's fio line from "Initialize Amazon EBS volumes")
    assert calls(root) == [
        f"mount -o ro,noatime {root}/dev/sdf {root}/data",
        f"fio --filename={root}/dev/sdf --rw=read --bs=1M --iodepth=32 --ioengine=libaio --direct=1"
        " --name=volume-initialize",
    ]
    ready = (root / "boot" / "ready").read_text()
    assert "SPOTRAIN_DATA_SOURCE=snapshot" in ready
    assert re.search(r"^SPOTRAIN_DATA_INIT_S=\d+$", ready, re.M)
    assert "stage: data-init" in (root / "boot" / "bootstrap.log").read_text()


def test_snapshot_volume_read_ahead_with_dd_in_parallel_without_fio(root: Path) -> None:
    (root / "dev" / "sdf").write_bytes(b"x" * (3 << 20))
    done = run(root, SPOTRAIN_FIO=str(root / "bin" / "no-fio"))
    assert done.returncode == 0, done.stderr + (root / "boot" / "bootstrap.log").read_text()
    log = (root / "boot" / "bootstrap.log").read_text()
    assert "stage: data-init 1/8" in log and "stage: data-init 8/8" in log
    assert "SPOTRAIN_DATA_INIT_S=" in (root / "boot" / "ready").read_text()
    assert (root / "boot" / "stage").read_text() == "ready\n"


def test_the_s3_copy_is_a_stage(root: Path) -> None:
    fake = _exe(root / "bin" / "aws-stage", '#!/usr/bin/env bash\ncp "$STAGE" "$STAGE.seen"\n')
    stage = root / "boot" / "stage"
    assert run(root, SPOTRAIN_DATA_S3="s3://b/p", SPOTRAIN_AWS=str(fake), STAGE=str(stage)).returncode == 0
    assert (root / "boot" / "stage.seen").read_text() == "data-s3\n"
    assert "SPOTRAIN_DATA_INIT_S" not in (root / "boot" / "ready").read_text()


def test_snapshot_volume_under_its_nvme_name(root: Path) -> None:
    (root / "dev" / "nvme0n1").touch()  # the root volume
    (root / "dev" / "nvme1n1").touch()
    assert run(root).returncode == 0
    assert calls(root)[-2] == f"mount -o ro,noatime {root}/dev/nvme1n1 {root}/data"


def test_no_data_source_and_no_python(root: Path) -> None:
    assert run(root).returncode == 0
    assert "SPOTRAIN_DATA_SOURCE=none" in (root / "boot" / "ready").read_text()
    (root / "boot" / "ready").unlink()
    done = run(root, SPOTRAIN_PYTHON=str(root / "missing"), PATH="/usr/bin:/bin")
    if Path("/opt/pytorch/bin/python").exists() or Path("/opt/conda/envs/pytorch/bin/python").exists():
        pytest.skip("this machine has a DLAMI PyTorch environment")
    assert done.returncode == 1 and not (root / "boot" / "ready").exists()
    assert "no PyTorch environment" in (root / "boot" / "failed").read_text()
