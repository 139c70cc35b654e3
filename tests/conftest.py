"""Shared fixtures. State lives in a temporary SPOTRAIN_HOME; nothing touches real AWS."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from spotrain.cloud.local import moto_placement

moto_placement.install()  # moto has no placement groups; the sweep and a multi-node launch ask for them

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own state directory and fake AWS credentials, so no test can reach real AWS."""
    home = tmp_path / "spotrain-home"
    home.mkdir()
    monkeypatch.setenv("SPOTRAIN_HOME", str(home))
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    # The trainer must never poll the real link-local IMDS address from a test.
    monkeypatch.setenv("SPOTRAIN_IMDS_URL", "off")
    return home


@pytest.fixture
def aws() -> Iterator[boto3.Session]:
    """A boto3 session whose every call is answered by moto in this process."""
    with mock_aws():
        yield boto3.Session(region_name="us-east-1")


@pytest.fixture
def moto_server():
    """A moto server on 127.0.0.1 (a free port), for code in another process or thread; yields its URL."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer("127.0.0.1", 0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
