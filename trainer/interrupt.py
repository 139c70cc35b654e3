"""The stop for a spot notice, bounded by the notice's own deadline.

AWS posts `spot/instance-action` with `time`, when it will act, "two minutes" ahead (EC2 User Guide,
"Spot Instance interruption notices"). The final checkpoint is written locally first (seconds at
most); the S3 upload then gets what is left before that time, minus a margin for the exit itself. Past
it, the local checkpoint stands (an EBS data volume outlives the instance when it is set to, and a
`stop` or `hibernate` action keeps the root volume), and the `interruption` event says the upload was
cut, so the controller knows S3's LATEST may be one checkpoint behind.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from datetime import datetime

from trainer import EXIT_INTERRUPTED
from trainer.checkpoint import Progress
from trainer.dist import Dist
from trainer.events import EventLog
from trainer.spot import Notice, SpotWatcher

NOTICE_LEAD_S = 120.0  # AWS's two-minute warning: the longest a real notice gives
# torchrun forwards a SIGTERM to its workers and kills them 30 s later (torch.distributed.elastic's
# PContext.close(timeout=30)); a SIGTERM carries no time of its own.
SIGTERM_GRACE_S = 30.0
DEFAULT_MARGIN_S = 10.0  # kept back for writing the last events, closing, and torchrun's teardown


def margin_s() -> float:
    return float(os.environ.get("SPOTRAIN_NOTICE_MARGIN_S", DEFAULT_MARGIN_S))


def notice_deadline(notice: Notice, seen_at: float) -> tuple[float, str]:
    """(unix time by which this process must be gone, where that came from).

    The notice's `time` when it is usable; capped at two minutes after the notice was seen (a clock
    behind AWS's would otherwise give a longer budget than exists). A time more than two minutes in the
    past cannot be a live notice's (a skewed clock, or a replayed one): then two minutes from now."""
    if notice.source == "sigterm":
        return seen_at + SIGTERM_GRACE_S, f"sigterm: {SIGTERM_GRACE_S:.0f} s (torchrun's kill timeout)"
    try:
        at = datetime.fromisoformat(notice.notice_time.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return seen_at + NOTICE_LEAD_S, f"notice time {notice.notice_time!r} unreadable: 120 s from now"
    if at < seen_at - NOTICE_LEAD_S:
        return seen_at + NOTICE_LEAD_S, "notice time long past (clock skew?): 120 s from now"
    if at > seen_at + NOTICE_LEAD_S:
        return seen_at + NOTICE_LEAD_S, "notice time over 120 s away (clock skew?): 120 s from now"
    return at, "notice time"


def interrupted(
    ddp: Dist,
    watcher: SpotWatcher,
    save: Callable[[bool], float],
    mirror,
    events: EventLog,
    status: Callable[..., None],
    progress: Progress,
    log: logging.Logger,
    started: float,
) -> int:
    """All ranks agreed to stop for a notice: checkpoint now, upload within the deadline, say so, exit 75."""
    notice = next(n for n in ddp.gather(watcher.notice) if n is not None)
    seen = time.time()
    deadline, basis = notice_deadline(notice, seen)
    watcher.stop()
    blocked = save(True)
    uploaded, cut = None, False
    if mirror is not None:
        budget = max(0.0, deadline - margin_s() - time.time())
        uploaded = mirror.flush(budget)
        cut = not uploaded
    ddp.barrier()  # no rank exits before rank 0 has saved: torchrun stops the others when one exits
    events.write(
        "interruption",
        source=notice.source,
        notice_time=notice.notice_time,
        action=notice.action,
        step=progress.step,
        epoch=progress.epoch,
        checkpoint_s=round(blocked, 3),
        uploaded=uploaded,
        upload_cut=cut,
        deadline_in_s=round(deadline - seen, 3),
        deadline_from=basis,
        seconds=round(time.time() - started, 3),
    )
    status("interrupted", source=notice.source)
    if mirror is not None:  # the logs too, in what time is left (none when the upload was cut)
        mirror.close(0.0 if cut else max(0.0, deadline - margin_s() - time.time()))
    log.info(
        f"interrupted ({notice.source}, notice time {notice.notice_time}): checkpoint at step {progress.step} "
        f"in {blocked:.2f} s"
        + ("; S3 upload cut at the deadline, the local checkpoint stands" if cut else "")
        + f"; exit {EXIT_INTERRUPTED}"
    )
    return EXIT_INTERRUPTED
