"""Fixtures for the dry-run cloud's tests; helpers live in local_helpers.py (every conftest.py is a
module called "conftest", so nothing imports from here)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from spotrain.cloud.local import LocalCloud


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[LocalCloud]:
    """A dry-run cloud with a short boot and a short notice, closed after the test."""
    c = LocalCloud(tmp_path / "dry-run", boot_delay_s=0.2, notice_grace_s=5.0, imds_poll_s=0.05)
    yield c
    c.close()
