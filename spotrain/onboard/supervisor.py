"""A detached run's supervisor: the one process of spotrain on its instance, started by the user data
after the bootstrap is ready (`python -m onboard.supervisor --bucket B --run-id R --region X --run-dir D`
from the bundle directory). stdlib + boto3 only.

At boot it reads the run's settings and ledger (onboard/ledger.py) and refuses to start an attempt past
--max-attempts, --budget or the failure loop (the run ends FAILED with the reason, desired 0). Else it
writes its attempt's record (instance, type, zone, lifecycle from IMDSv2; the spot price at start),
heartbeats it, and runs the trainer with `--resume auto --mirror s3://B/runs/R` (the trainer itself
checkpoints early on a rebalance recommendation and stops on the notice: trainer/spot.py). When an
earlier attempt is still live (no end, a fresh heartbeat: Capacity Rebalancing launched this instance
before that one's notice), the trainer starts warm and goes only once that attempt ended
(onboard/standby.py): one trainer trains at a time, and this one resumes from its last checkpoint. Then:
- exit 0: the record's end, the run SUCCEEDED, the group's desired capacity 0 (AWS terminates us);
- exit 75: the record's end, and wait to be reclaimed; if EC2 has not reclaimed us within
  `--reclaim-wait-s`, leave the group (it starts a replacement) rather than idle on a bill;
- exit 69 (S3 unreachable): the trainer again, up to the settings' `s3_restarts`, then a failure;
- a failure before the attempt's first checkpoint: leave the group without decrementing (it starts a
  replacement: a bad host, a driver, a transient) unless that makes `failure_loop` such attempts in a
  row; any other failure ends the run FAILED, desired 0.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from . import standby
from .ledger import (
    EXIT_DONE,
    EXIT_INTERRUPTED,
    EXIT_S3,
    FAILED,
    SUCCEEDED,
    AttemptRecord,
    Ledger,
    RunEnd,
    RunSettings,
    attempt_key,
    end_key,
    ledger_prefix,
    refusal,
    settings_key,
)

IMDS_ENV = "SPOTRAIN_IMDS_URL"
EXIT_RUN_ENDED = -2  # a warm trainer that never went: the attempt it waited for ended the run
WAIT_FOR_PREVIOUS_S = 600.0  # past the notice's two minutes and the reclaim: the previous one is gone
EXIT_SUPERVISOR = -1  # the attempt's record when the trainer could not be run at all
DEFAULT_IMDS = "http://169.254.169.254"


@dataclass(frozen=True)
class Identity:
    instance_id: str
    instance_type: str
    zone: str
    lifecycle: str


def _imds_get(base: str, token: str, path: str) -> str | None:
    req = urllib.request.Request(
        f"{base}/latest/meta-data/{path}", headers={"X-aws-ec2-metadata-token": token}
    )
    try:
        with urllib.request.urlopen(req, timeout=2.0) as resp:
            return resp.read().decode()
    except OSError:  # 404 (a path this IMDS does not serve) or unreachable
        return None


def identity(default_type: str) -> Identity:
    """Who this instance is, from IMDSv2 (EC2 User Guide, "Use IMDSv2": a token by PUT, then GETs)."""
    base = os.environ.get(IMDS_ENV, DEFAULT_IMDS).rstrip("/")
    put = urllib.request.Request(
        f"{base}/latest/api/token", method="PUT", headers={"X-aws-ec2-metadata-token-ttl-seconds": "300"}
    )
    with urllib.request.urlopen(put, timeout=2.0) as resp:
        token = resp.read().decode()
    iid, zone = _imds_get(base, token, "instance-id"), _imds_get(base, token, "placement/availability-zone")
    if not iid or not zone:
        raise RuntimeError(f"IMDS at {base} gave no instance id or zone")
    return Identity(
        instance_id=iid,
        instance_type=_imds_get(base, token, "instance-type") or default_type,
        zone=zone,
        lifecycle=_imds_get(base, token, "instance-life-cycle") or "unknown",
    )


class RunBucket:
    """The run's prefix in S3, as the supervisor reads and writes it."""

    def __init__(self, s3: Any, bucket: str, run_id: str) -> None:
        self.s3, self.bucket, self.run_id = s3, bucket, run_id

    def _get(self, key: str) -> str | None:
        try:
            return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read().decode()
        except self.s3.exceptions.NoSuchKey:
            return None

    def _put(self, key: str, text: str) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=text.encode(), ContentType="application/json")

    def settings(self) -> RunSettings:
        text = self._get(settings_key(self.run_id))
        if text is None:
            raise RuntimeError(f"no settings at s3://{self.bucket}/{settings_key(self.run_id)}")
        return RunSettings.from_json(text)

    def ledger(self) -> Ledger:
        keys: list[str] = []
        pages = self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=ledger_prefix(self.run_id)
        )
        for page in pages:
            keys += [o["Key"] for o in page.get("Contents", []) if o["Key"].endswith(".json")]
        records = [AttemptRecord.from_json(t) for t in map(self._get, sorted(keys)) if t]
        end = self._get(end_key(self.run_id))
        return Ledger(tuple(sorted(records, key=lambda r: r.attempt)), RunEnd.from_json(end) if end else None)

    def write_attempt(self, rec: AttemptRecord) -> None:
        self._put(attempt_key(self.run_id, rec.attempt), rec.to_json())

    def write_end(self, end: RunEnd) -> None:
        self._put(end_key(self.run_id), end.to_json())


class Heartbeat:
    """Rewrites the attempt's record every `every_s` with a fresh heartbeat, until stopped."""

    def __init__(self, write: Callable[[AttemptRecord], None], rec: AttemptRecord, every_s: float) -> None:
        self._write, self.rec, self._every = write, rec, every_s
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one writer at a time, so no beat writes back an older record
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join(30)

    def update(self, **changes: Any) -> None:
        """The record changed (e.g. `stopped_at`), written now rather than at the next beat."""
        with self._lock:
            self.rec = replace(self.rec, **changes)
            self._write(self.rec)

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            try:
                self.update(heartbeat=time.time())
            except Exception:  # noqa: BLE001 - a missed heartbeat is retried at the next; the run goes on
                continue


def events_size(run_dir: Path) -> int:
    """Where the next event will start in events.jsonl: the mark of an attempt's first event."""
    path = run_dir / "events.jsonl"
    return path.stat().st_size if path.exists() else 0


def trainer_events(run_dir: Path, since: int = 0) -> list[dict[str, Any]]:
    """The trainer's events from byte `since` on (a torn line skipped, as trainer/events.py reads them).
    An attempt's events are those after its mark, not those after its start by the clock: the last
    events of the attempt before (its rebalance, its checkpoint) may carry a time a moment later."""
    path = run_dir / "events.jsonl"
    out: list[dict[str, Any]] = []
    if path.exists():
        with path.open("rb") as f:
            f.seek(since)
            text = f.read().decode("utf-8", errors="replace")
        for line in text.splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


class Supervisor:
    def __init__(
        self, run: RunBucket, settings: RunSettings, me: Identity, asg: Any, *, run_dir: Path, python: str
    ) -> None:
        self.run, self.settings, self.me, self.asg = run, settings, me, asg
        self.run_dir, self.python = run_dir, python
        self.usd_per_hour: float | None = None  # the price in force at boot; None: the launch's quote

    def end_run(self, state: str, reason: str, attempt: int | None) -> None:
        """The run's end written once, and the group asked for no instance (AWS terminates this one)."""
        if self.run.ledger().end is None:
            self.run.write_end(RunEnd(state, reason, time.time(), attempt))
        self.asg.set_desired_capacity(AutoScalingGroupName=self.settings.group, DesiredCapacity=0)

    def leave_group(self) -> None:
        """This instance terminated, the desired capacity kept: the group starts a replacement."""
        self.asg.terminate_instance_in_auto_scaling_group(
            InstanceId=self.me.instance_id, ShouldDecrementDesiredCapacity=False
        )

    def run_trainer(self, attempt: int, previous: AttemptRecord | None = None) -> int:
        """The trainer's exit code; exit 69 (S3 unreachable) started again up to `s3_restarts` times.
        With a `previous` attempt still live (Capacity Rebalancing launched this instance early), the
        trainer starts warm and goes only once that attempt ended (onboard/standby.py)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        args = list(self.settings.trainer_args)
        if "--run-dir" in args:  # where this instance keeps the run (its home), not the laptop's guess
            args[args.index("--run-dir") + 1] = str(self.run_dir)
        cmd = [self.python, *args]
        env = {**os.environ, "SPOTRAIN_ATTEMPT": str(attempt)}
        if previous is not None:
            code = self.run_warm(args, env, previous)
            if code is not None and code != EXIT_S3:
                return code
        for _ in range(self.settings.s3_restarts + 1):
            with (self.run_dir / "train.log").open("ab") as log:
                code = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=Path.cwd())
            if code != EXIT_S3:
                return code
        return code

    def run_warm(self, args: list[str], env: dict[str, str], previous: AttemptRecord) -> int | None:
        """The trainer started warm beside the live `previous` attempt; its exit code once the go came,
        None when it did not go (the standby died: the caller starts it cold), EXIT_RUN_ENDED when the
        run ended meanwhile (nothing trained here)."""
        modules = ",".join(self.settings.warm_modules)
        cmd = [self.python, "-m", "onboard.standby", str(self.run_dir), modules, *args]
        with (self.run_dir / "train.log").open("ab") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=Path.cwd())
        key = attempt_key(self.run.run_id, previous.attempt)

        def read() -> tuple[AttemptRecord | None, bool]:
            text = self.run._get(key)
            return (AttemptRecord.from_json(text) if text else None), self.run._get(
                end_key(self.run.run_id)
            ) is not None

        stale_s = max(3 * self.settings.heartbeat_s, 10.0)
        why = standby.Turn(read, stale_s).wait(lambda: proc.poll() is None, WAIT_FOR_PREVIOUS_S)
        if why in ("stopped", "ended", "silent", "timeout"):
            standby.go_path(self.run_dir).write_text(json.dumps({"t": time.time(), "why": why}))
            return proc.wait()
        proc.kill()
        proc.wait()
        return EXIT_RUN_ENDED if why == "run-ended" else None

    def boot(self, *, reclaim_wait_s: float) -> int:
        """One attempt, from the guards at boot to its end; the exit code of this process."""
        ledger = self.run.ledger()
        if ledger.end is not None:  # ended meanwhile (down, a limit): make sure the group agrees
            self.end_run(ledger.end.state, ledger.end.reason, ledger.end.attempt)
            return 0
        now = time.time()
        why = refusal(ledger, self.settings, zone=self.me.zone, now=now)
        if why is not None:
            self.end_run(FAILED, why, None)
            return 0
        rec = AttemptRecord(
            attempt=ledger.next_attempt,
            instance_id=self.me.instance_id,
            instance_type=self.me.instance_type,
            zone=self.me.zone,
            lifecycle=self.me.lifecycle,
            start=now,
            usd_per_hour=(
                self.usd_per_hour
                if self.usd_per_hour is not None
                else self.settings.zone_prices.get(self.me.zone, 0.0)
            ),
            heartbeat=now,
        )
        self.run.write_attempt(rec)
        mark = events_size(self.run_dir)
        previous = live_attempt(ledger, now, self.settings)
        try:
            # Its stop for a notice is told as soon as the checkpoint is mirrored (StopWatch): a warm
            # replacement beside it goes then, not after this trainer's exit and this record's end.
            with (
                Heartbeat(self.run.write_attempt, rec, self.settings.heartbeat_s) as beat,
                standby.StopWatch(self.run_dir, mark, lambda t: beat.update(stopped_at=t)),
            ):
                code = self.run_trainer(rec.attempt, previous)
            rec = beat.rec
        except Exception as err:  # noqa: BLE001 - never leave an instance idling on the bill
            return self.after(
                rec, EXIT_SUPERVISOR, mark=mark, reclaim_wait_s=0, reason=f"supervisor: {err!r}"
            )
        return self.after(rec, code, mark=mark, reclaim_wait_s=reclaim_wait_s)

    def after(
        self, rec: AttemptRecord, code: int, *, mark: int, reclaim_wait_s: float, reason: str = ""
    ) -> int:
        events = trainer_events(self.run_dir, since=mark)
        checkpointed = any(e.get("kind") == "checkpoint" and e.get("where") == "s3" for e in events)
        errors = [str(e.get("message", "")) for e in events if e.get("kind") == "error"]
        reason = reason or {EXIT_DONE: "finished", EXIT_INTERRUPTED: "interrupted"}.get(
            code, errors[-1] if errors else f"the trainer exited {code}"
        )
        rebalance = [e for e in events if e.get("kind") == "rebalance"]
        done = rec.ended(time.time(), code, reason, checkpointed=checkpointed)
        if rebalance:  # the trainer checkpointed early on EC2's recommendation (trainer/spot.py)
            done = replace(done, rebalance_at=float(rebalance[0].get("t", 0.0)))
        if code == EXIT_RUN_ENDED:  # the attempt it waited for ended the run: nothing trained here
            done = rec.ended(time.time(), EXIT_DONE, "the run ended before it trained", checkpointed=False)
        self.run.write_attempt(done)
        if code == EXIT_RUN_ENDED:
            end = self.run.ledger().end
            self.end_run(end.state if end else SUCCEEDED, end.reason if end else "", rec.attempt)
        elif code == EXIT_DONE:
            self.end_run(SUCCEEDED, f"attempt {rec.attempt} finished", rec.attempt)
        elif code == EXIT_INTERRUPTED:
            time.sleep(reclaim_wait_s)  # EC2 reclaims within the notice's two minutes: we end before this
            self.leave_group()
        else:
            # Another attempt only for a failure at start, and only where one would pass the guards.
            stop = refusal(self.run.ledger(), self.settings, zone=self.me.zone, now=time.time())
            if done.failed_before_checkpoint and stop is None:
                self.leave_group()
            else:
                self.end_run(FAILED, stop or f"attempt {rec.attempt}: {reason}", rec.attempt)
        return EXIT_DONE if code == EXIT_RUN_ENDED else code


def live_attempt(ledger: Ledger, now: float, settings: RunSettings) -> AttemptRecord | None:
    """The attempt still training beside this new one (no end, a fresh heartbeat): Capacity
    Rebalancing launched this instance before that one's notice. None for an ordinary replacement."""
    fresh = [
        a
        for a in ledger.attempts
        if a.end is None and now - a.heartbeat <= max(3 * settings.heartbeat_s, 10.0)
    ]
    return fresh[-1] if fresh else None


def clients(region: str) -> tuple[Any, Any, Any]:
    """S3, Auto Scaling and EC2 as the instance role (boto3 finds the role's credentials in IMDS)."""
    import boto3  # on the instance's image; imported here so the laptop reads the ledger without it

    sess = boto3.Session(region_name=region)
    return sess.client("s3"), sess.client("autoscaling"), sess.client("ec2")


def spot_price_now(ec2: Any, me: Identity) -> float | None:
    """The spot price in force in this instance's zone now: the newest history row at or before now
    (a history query from now returns the price then in force, EC2 API Reference,
    DescribeSpotPriceHistory); None when EC2 has none, or the role may not ask."""
    try:
        rows = ec2.describe_spot_price_history(
            InstanceTypes=[me.instance_type],
            AvailabilityZone=me.zone,
            ProductDescriptions=["Linux/UNIX"],
            StartTime=time.time(),
            MaxResults=10,
        )["SpotPriceHistory"]
    except Exception:  # noqa: BLE001 - the launch's quote stands in for it (the record says which)
        return None
    newest = max(rows, key=lambda r: r["Timestamp"], default=None)
    return float(newest["SpotPrice"]) if newest else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="onboard.supervisor", description=__doc__.split("\n\n")[0])
    p.add_argument("--bucket", required=True)
    p.add_argument("--run-id", required=True)
    p.add_argument("--region", required=True)
    p.add_argument("--run-dir", required=True, type=Path)
    p.add_argument("--python", default=sys.executable, help="the Python that runs the trainer")
    p.add_argument("--reclaim-wait-s", type=float, default=300.0)
    args = p.parse_args(argv)
    s3, asg, ec2 = clients(args.region)
    run = RunBucket(s3, args.bucket, args.run_id)
    settings = run.settings()
    me = identity(settings.instance_type)
    sup = Supervisor(run, settings, me, asg, run_dir=args.run_dir, python=args.python)
    sup.usd_per_hour = spot_price_now(ec2, me)
    return sup.boot(reclaim_wait_s=args.reclaim_wait_s)


if __name__ == "__main__":
    sys.exit(main())
