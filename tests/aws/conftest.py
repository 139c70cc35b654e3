"""Every test here runs against moto in this process; nothing reaches real AWS."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws


@pytest.fixture
def aws() -> Iterator[boto3.Session]:
    """A boto3 session whose every call is answered by moto in this process."""
    with mock_aws():
        yield boto3.Session(region_name="us-east-1")
