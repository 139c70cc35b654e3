"""The spot interruption watcher: polls IMDSv2 for an interruption notice; SIGTERM counts as one too.

AWS posts `spot/instance-action` two minutes before it takes the instance back and advises polling
every 5 s. The watcher only raises a flag; the training loop reads it at each step boundary, all ranks
agree through one all-reduce, save, and exit 75.

The same poll reads `events/recommendations/rebalance`: EC2's rebalance recommendation, "a signal that
notifies you when a Spot Instance is at elevated risk of interruption", which "can arrive sooner than
the two-minute Spot Instance interruption notice", or along with it, or never (EC2 User Guide, "EC2
instance rebalance recommendations"). It answers 404 until then, then `{"noticeTime": ...}`. It is a
reason to checkpoint now, not to stop: the loop saves once and trains on.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

DEFAULT_IMDS_URL = "http://169.254.169.254"
TOKEN_TTL_S = 21600  # the longest IMDSv2 allows; the token is renewed well before it expires
# Fault injection for dry-runs and tests: `step:N` (after training step N) or `P%` (of the schedule's
# steps). A notice polled from an IMDS lands a few steps after it was posted, depending on the machine's
# speed; one pinned to progress lands at that step on every machine, thread count and load.
INJECT_ENV = "SPOTRAIN_NOTICE_AT"
REBALANCE_ENV = "SPOTRAIN_REBALANCE_AT"  # the same, for a rebalance recommendation
# A file the trainer waits for after its rebalance checkpoint, until it exists or a notice comes (bounded
# by HOLD_S): the dry-run's stand-in, playing Capacity Rebalancing, creates it once the replacement's
# trainer is warm (or posts the notice instead): the minutes by which a real recommendation leads its
# notice, which a run of seconds has not, so that an injected notice still lands at its pinned step.
HOLD_ENV = "SPOTRAIN_REBALANCE_HOLD"
HOLD_S = 300.0
ACTION_PATH = "/latest/meta-data/spot/instance-action"
REBALANCE_PATH = "/latest/meta-data/events/recommendations/rebalance"
NOTICE_GRACE_S = 120  # AWS gives two minutes between the notice and the reclaim


@dataclass(frozen=True)
class Notice:
    source: str  # "imds" or "sigterm"
    notice_time: str  # when AWS says it will act (ISO 8601), or when the signal came
    action: str  # terminate | stop | hibernate | sigterm


@dataclass(frozen=True)
class Rebalance:
    source: str  # "imds" or "injected"
    notice_time: str  # when EC2 made the recommendation (ISO 8601), or when the injection fired


class SpotWatcher:
    """A daemon thread polling IMDSv2; `notice` is None until an interruption is announced."""

    def __init__(self, base_url: str | None = None, interval_s: float = 5.0, rank: int = 0) -> None:
        url = os.environ.get("SPOTRAIN_IMDS_URL", DEFAULT_IMDS_URL) if base_url is None else base_url
        self.base_url = None if url.strip().lower() in ("", "off", "none") else url.rstrip("/")
        self.interval_s = float(os.environ.get("SPOTRAIN_IMDS_POLL_S", interval_s))
        self.rank = rank
        self.notice: Notice | None = None
        self.rebalance: Rebalance | None = None
        self._token: str | None = None
        self._token_expiry = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failures = 0
        self.inject_step: int | None = None
        self.rebalance_step: int | None = None

    # -- fault injection ---------------------------------------------------------------------------
    def arm(self, total_steps: int, at: str | None = None, rebalance_at: str | None = None) -> int | None:
        """Read `SPOTRAIN_NOTICE_AT` (or `at`): the step at which `check_step` raises the notice; and
        `SPOTRAIN_REBALANCE_AT` (or `rebalance_at`): the step at which it raises a rebalance."""
        at = os.environ.get(INJECT_ENV, "") if at is None else at
        rebalance_at = os.environ.get(REBALANCE_ENV, "") if rebalance_at is None else rebalance_at
        self.inject_step = injection_step(at, total_steps)
        self.rebalance_step = injection_step(rebalance_at, total_steps, REBALANCE_ENV)
        return self.inject_step

    def check_step(self, step: int) -> None:
        """Called at every step boundary: an armed injection becomes the notice (or the rebalance
        recommendation) at its step exactly."""
        if self.inject_step is not None and self.notice is None and step >= self.inject_step:
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + NOTICE_GRACE_S))
            self.notice = Notice(source="injected", notice_time=when, action="terminate")
        if self.rebalance_step is not None and self.rebalance is None and step >= self.rebalance_step:
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            self.rebalance = Rebalance(source="injected", notice_time=now)

    def hold_after_rebalance(self, limit_s: float = HOLD_S) -> None:
        """After the rebalance checkpoint (fault injection, HOLD_ENV): wait until the hold file exists or
        a notice came (the IMDS poll or SIGTERM), at most `limit_s`; nothing to wait for without it."""
        path = os.environ.get(HOLD_ENV, "")
        deadline = time.monotonic() + limit_s
        while path and self.notice is None and not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.01)

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> SpotWatcher:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_sigterm)
        if self.base_url is not None:
            self._thread = threading.Thread(target=self._run, name="spot-watcher", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)

    def _on_sigterm(self, signum, frame) -> None:
        if self.notice is None:
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            self.notice = Notice(source="sigterm", notice_time=now, action="sigterm")

    # -- polling -----------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set() and self.notice is None:
            if self.rebalance is None:
                recommended = self.poll_rebalance()
                if recommended is not None and self.rebalance is None:  # an injected one may have come
                    self.rebalance = recommended
            found = self.poll_once()
            if found is not None and self.notice is None:
                self.notice = found
                return
            # Off EC2 (a laptop) the address does not answer: back off instead of hammering it.
            wait = self.interval_s if self._failures < 3 else min(60.0, self.interval_s * 6)
            self._stop.wait(wait)

    def poll_once(self) -> Notice | None:
        """One IMDSv2 check: a Notice when AWS has posted an instance action, else None (404)."""
        body = self._get_json(ACTION_PATH)
        if body is None:
            return None
        return Notice(
            source="imds", notice_time=str(body.get("time", "")), action=str(body.get("action", ""))
        )

    def poll_rebalance(self) -> Rebalance | None:
        """One IMDSv2 check: a Rebalance once EC2 has recommended one, else None (404)."""
        body = self._get_json(REBALANCE_PATH)
        return None if body is None else Rebalance(source="imds", notice_time=str(body.get("noticeTime", "")))

    def _get_json(self, path: str) -> dict | None:
        """GET a metadata path with the IMDSv2 token: its JSON object, or None (404, or unreachable)."""
        try:
            token = self._get_token()
            req = urllib.request.Request(
                f"{self.base_url}{path}",
                headers={"X-aws-ec2-metadata-token": token, "User-Agent": self._agent()},
            )
            with urllib.request.urlopen(req, timeout=2.0) as resp:
                body = json.loads(resp.read().decode() or "{}")
            self._failures = 0
            return body if isinstance(body, dict) else {}
        except urllib.error.HTTPError as err:
            if err.code == 401:  # token expired or revoked: fetch a new one next time
                self._token = None
            self._failures = 0 if err.code == 404 else self._failures + 1
            return None
        except (OSError, ValueError):
            self._failures += 1
            return None

    def _get_token(self) -> str:
        if self._token is None or time.monotonic() > self._token_expiry:
            req = urllib.request.Request(
                f"{self.base_url}/latest/api/token",
                method="PUT",
                headers={
                    "X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL_S),
                    "User-Agent": self._agent(),
                },
            )
            with urllib.request.urlopen(req, timeout=2.0) as resp:
                self._token = resp.read().decode()
            self._token_expiry = time.monotonic() + TOKEN_TTL_S / 2
        return self._token

    def _agent(self) -> str:
        # Names the rank so a test's fake IMDS can serve a notice to one rank only.
        return f"spotrain-trainer/rank-{self.rank}"


def injection_step(at: str, total_steps: int, name: str = INJECT_ENV) -> int | None:
    """`step:N` -> N, `P%` -> that share of `total_steps` (at least step 1), empty -> None."""
    text = at.strip().lower()
    if not text:
        return None
    if text.startswith("step:") and text[5:].isdigit() and int(text[5:]) >= 1:
        return int(text[5:])
    if text.endswith("%"):
        try:
            share = float(text[:-1]) / 100.0
        except ValueError:
            share = -1.0
        if 0 < share < 1:
            return max(1, round(share * total_steps))
    raise ValueError(f"{name}={at!r}: expected step:N (N >= 1) or a share such as 50%")
