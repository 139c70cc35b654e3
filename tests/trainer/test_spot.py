"""The IMDSv2 watcher against a fake IMDS on 127.0.0.1."""

from __future__ import annotations

import os
import signal

from helpers import wait_for

from trainer.spot import SpotWatcher


def test_no_notice_is_404_and_a_posted_notice_is_seen(imds) -> None:
    watcher = SpotWatcher(base_url=imds.url, interval_s=0.02)
    assert watcher.poll_once() is None
    imds.arm()
    notice = watcher.poll_once()
    assert (
        notice.source == "imds"
        and notice.action == "terminate"
        and notice.notice_time == "2026-11-29T12:00:00Z"
    )
    assert imds.tokenless == 0  # the GETs carried the IMDSv2 token


def test_watcher_thread_raises_the_flag(imds) -> None:
    watcher = SpotWatcher(base_url=imds.url, interval_s=0.02).start()
    try:
        wait_for(lambda: imds.polls >= 2, 10, "two polls")
        assert watcher.notice is None
        imds.arm()
        wait_for(lambda: watcher.notice is not None, 10, "the notice")
    finally:
        watcher.stop()


def test_unreachable_imds_is_no_notice() -> None:
    watcher = SpotWatcher(base_url="http://127.0.0.1:9", interval_s=0.02)  # nothing listens on port 9
    assert watcher.poll_once() is None and watcher.poll_once() is None


def test_off_disables_polling_but_sigterm_still_counts() -> None:
    previous = signal.getsignal(signal.SIGTERM)
    watcher = SpotWatcher(base_url="off").start()
    try:
        assert watcher.base_url is None and watcher._thread is None
        os.kill(os.getpid(), signal.SIGTERM)
        wait_for(lambda: watcher.notice is not None, 5, "the SIGTERM notice")
        assert watcher.notice.source == "sigterm"
    finally:
        signal.signal(signal.SIGTERM, previous)
