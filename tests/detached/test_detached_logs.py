"""`spotrain logs` of a detached run: each attempt's train.log read from the run's S3 prefix, where its
instance's trainer mirrors it (runs/RUN/attempts/N/train.log), so no instance need answer; `-f` goes on
as the log grows and into the group's later attempts until the run's ledger holds its end. The run is
handed off on the dry-run's cloud in this process; the ledger and the logs are written as the
supervisor and the mirror write them, the commands run as a user's shell runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from spotrain import config, detached
from spotrain.cloud.aws.storage import run_prefix
from spotrain.controller import create_run, prepare
from spotrain.onboard.ledger import AttemptRecord, RunEnd
from spotrain.onboard.supervisor import RunBucket
from spotrain.workspace import open_controller

pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse AWS")


class Handed:
    """A detached run handed off, with its ledger and its mirrored logs written by hand."""

    def __init__(self, ctl) -> None:
        spec, plan = prepare(ctl, config.load_spec(None, {"recipe": "digits", "dry_run": True}))
        self.ctl, self.run_id = ctl, create_run(ctl, spec, plan)
        state = detached.hand_off_run(ctl.cloud, ctl.store, self.run_id, state_dir=ctl.state_dir)
        self.member, self.zone, _ = state.instances[0]
        self.s3 = ctl.cloud.session().client("s3", region_name=state.region)
        self.bucket = ctl.cloud.bucket()
        self.ledger = RunBucket(self.s3, self.bucket, self.run_id)

    def attempt(self, n: int, *, end: float | None = None) -> None:
        start = 1000.0 + 100 * n
        self.ledger.write_attempt(
            AttemptRecord(
                n, f"{self.member}{n}", "g4dn.xlarge", self.zone, "spot", start, 0.3, heartbeat=start, end=end
            )
        )

    def log(self, n: int, text: str) -> None:
        """What the mirror does: the whole train.log so far, put again."""
        key = f"{run_prefix(self.run_id)}attempts/{n}/train.log"
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=text.encode())

    def end(self, state: str, reason: str) -> None:
        self.ledger.write_end(RunEnd(state, reason, 2000.0))


def spotrain(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "spotrain.cli", *args], capture_output=True, text=True, env=os.environ.copy()
    )


def test_logs_reads_each_attempts_log_from_s3_and_follows_into_the_next(isolated_env: Path) -> None:
    with open_controller(dry_run=True, boot_delay_s=0.0) as ctl:
        run = Handed(ctl)
        run.attempt(1, end=1150.0)
        run.log(1, "attempt one: step 10\nattempt one: notice at step 30\n")
        run.attempt(2, end=1290.0)
        run.log(2, "attempt two: resumed from step 30\nattempt two: done top1 0.99")  # no final newline
        run.end("SUCCEEDED", "target reached")
        run_id = run.run_id

    newest = spotrain("logs", run_id)
    assert newest.returncode == 0, newest.stderr
    assert newest.stdout.splitlines() == ["attempt two: resumed from step 30", "attempt two: done top1 0.99"]
    first = spotrain("logs", run_id, "--attempt", "1")
    assert first.stdout.splitlines() == ["attempt one: step 10", "attempt one: notice at step 30"]

    followed = spotrain("logs", run_id, "--attempt", "1", "-f")
    assert followed.returncode == 0, followed.stderr
    lines = followed.stdout.splitlines()
    assert lines[:2] == ["attempt one: step 10", "attempt one: notice at step 30"]
    assert lines[2].startswith(f"==> attempt 2 of run {run_id} (")
    assert lines[3:5] == ["attempt two: resumed from step 30", "attempt two: done top1 0.99"]
    assert lines[5] == f"==> run {run_id} (detached): SUCCEEDED: target reached <=="

    missing = spotrain("logs", run_id, "--attempt", "3")
    assert missing.returncode == 2 and "has no attempt 3; its attempts are 1 to 2" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_logs_f_of_a_live_attempt_prints_what_the_mirror_adds_once(isolated_env: Path) -> None:
    """Each poll finds what the mirror put since the last one (a ranged read from the byte offset), a
    line split across two uploads is printed whole, once; the run's end ends the follow."""
    with open_controller(dry_run=True, boot_delay_s=0.0) as ctl:
        run = Handed(ctl)
        run.attempt(1)
        uploads = iter(
            [
                "step 5\nstep 1",  # the trainer was mid-line when the mirror put it
                "step 5\nstep 10\nstep 15\n",
                None,  # the attempt ends: its record, then the run's
            ]
        )
        run.log(1, "")

        def poll_wait(_s: float) -> None:  # each wait between polls: the mirror's next upload lands
            text = next(uploads)
            if text is None:
                run.attempt(1, end=1190.0)
                run.end("SUCCEEDED", "target reached")
            else:
                run.log(1, text)

        lines = list(detached.attempt_log(ctl.cloud, ctl.store, run.run_id, follow=True, sleep=poll_wait))
    assert lines == [
        "step 5",
        "step 10",
        "step 15",
        f"==> run {run.run_id} (detached): SUCCEEDED: target reached <==",
    ]


def test_logs_of_a_detached_run_with_no_attempt_yet_says_so(isolated_env: Path) -> None:
    with open_controller(dry_run=True, boot_delay_s=0.0) as ctl:
        run_id = Handed(ctl).run_id
    out = spotrain("logs", run_id)
    assert (
        out.returncode == 2
        and "has no attempt yet" in out.stderr
        and f"spotrain attach {run_id}" in out.stderr
    )
