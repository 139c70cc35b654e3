"""The notice path is bounded by the notice's own `time`: with S3 too slow, the trainer exits 75 before
that time with its local checkpoint complete, and says the upload was cut."""

from __future__ import annotations

import time

from helpers import wait_for
from trainer_helpers import read_events

from trainer.checkpoint import verify
from trainer.interrupt import NOTICE_LEAD_S, SIGTERM_GRACE_S, notice_deadline
from trainer.spot import Notice


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def test_deadline_is_the_notice_time_within_two_minutes() -> None:
    seen = 1_800_000_000.0
    at, basis = notice_deadline(Notice("imds", iso(seen + 100), "terminate"), seen)
    assert at == seen + 100 and basis == "notice time"
    at, _ = notice_deadline(Notice("imds", iso(seen - 30), "terminate"), seen)  # seen late: already past
    assert at == seen - 30
    for skewed in (iso(seen - 4 * 86400), iso(seen + 3600), "soon"):  # a clock off, or junk
        at, basis = notice_deadline(Notice("imds", skewed, "terminate"), seen)
        assert at == seen + NOTICE_LEAD_S and "120 s from now" in basis
    at, basis = notice_deadline(Notice("sigterm", iso(seen), "sigterm"), seen)
    assert at == seen + SIGTERM_GRACE_S and "sigterm" in basis


def test_slow_s3_upload_is_cut_at_the_deadline_and_the_local_checkpoint_stands(
    trainer, imds, slow_s3, tmp_path
) -> None:
    proxy, bucket = slow_s3
    run = tmp_path / "run"
    margin = 3
    proc = trainer.start(
        *("--recipe", "digits", "--batch-size", "8", "--max-epochs", "50", "--log-every", "1"),
        *("--run-dir", str(run), "--mirror", f"s3://{bucket}/runs/r1"),
        env={**imds.env(), "AWS_ENDPOINT_URL": proxy.url, "SPOTRAIN_NOTICE_MARGIN_S": str(margin)},
    )
    try:
        wait_for(lambda: any(e["kind"] == "step" for e in read_events(run)), 60, "the first step")
        deadline = int(time.time()) + margin + 3  # whole seconds, as the notice's `time` has them
        imds.notice_time = iso(deadline)
        imds.arm()
        code = proc.wait(timeout=deadline - time.time() + 30)
    finally:
        proc.kill()
    assert code == 75, proc.stdout.read()
    assert proxy.held >= 1  # the upload was started, and S3 never answered it
    events = read_events(run)
    interruption = next(e for e in events if e["kind"] == "interruption")
    # The upload gave up at deadline - margin, so its verdict is in before the deadline. (The process's
    # own exit after it is the margin's to cover, and on a loaded machine takes seconds more.)
    assert interruption["t"] < deadline, f"wrote its interruption {interruption['t'] - deadline:.1f} s late"
    assert interruption["uploaded"] is False and interruption["upload_cut"] is True
    assert interruption["deadline_from"] == "notice time"
    assert interruption["notice_time"] == iso(deadline)
    assert not [e for e in events if e["kind"] == "checkpoint" and e["where"] == "s3"]
    local = [e for e in events if e["kind"] == "checkpoint" and e["where"] == "local"]
    assert local[-1]["step"] == interruption["step"]
    latest = (run / "ckpt" / "LATEST").read_text().strip()
    assert latest == f"step-{interruption['step']:06d}" and verify(run / "ckpt" / latest) is None
