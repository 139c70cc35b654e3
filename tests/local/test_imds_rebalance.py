"""The dry-run's IMDS serves a rebalance recommendation as EC2 does (404 until posted, then 200 with
`noticeTime`, IMDSv2 only), and the trainer's watcher reads it through its token."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import datetime, timezone

import pytest
from helpers import wait_for

from spotrain.cloud.local.imds import REBALANCE_PATH, FakeImds
from trainer.spot import SpotWatcher


@pytest.fixture
def imds():
    server = FakeImds("i-0123456789abcdef0", "us-east-1a")
    yield server
    server.close()


def get(url: str, token: str | None = None) -> tuple[int, bytes]:
    headers = {"X-aws-ec2-metadata-token": token} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, b""


def test_posted_rebalance_is_served_with_a_token_only_and_the_watcher_sees_it(imds) -> None:
    watcher = SpotWatcher(base_url=imds.url, interval_s=0.02)
    assert watcher.poll_rebalance() is None  # 404 until EC2 recommends it
    imds.post_rebalance(datetime(2020, 11, 5, 8, 22, tzinfo=timezone.utc))
    assert get(imds.url + REBALANCE_PATH)[0] == 401  # IMDSv2: no token, no answer
    token = watcher._get_token()
    status, body = get(imds.url + REBALANCE_PATH, token)
    assert status == 200 and json.loads(body) == {"noticeTime": "2020-11-05T08:22:00Z"}
    seen = watcher.poll_rebalance()
    assert (seen.source, seen.notice_time) == ("imds", "2020-11-05T08:22:00Z")
    assert watcher.poll_once() is None  # a recommendation is not an interruption notice


def test_watcher_thread_raises_rebalance_and_keeps_watching_for_the_notice(imds) -> None:
    watcher = SpotWatcher(base_url=imds.url, interval_s=0.02).start()
    try:
        imds.post_rebalance()
        wait_for(lambda: watcher.rebalance is not None, 10, "the rebalance recommendation")
        assert watcher.notice is None and watcher.rebalance.source == "imds"
        imds.post_notice()
        wait_for(lambda: watcher.notice is not None, 10, "the interruption notice after it")
    finally:
        watcher.stop()
