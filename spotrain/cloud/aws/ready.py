"""Waiting for an instance's bootstrap (infra/bootstrap.sh) to say it is ready, over SSH: its ready
marker, or its failure marker with the reason, and meanwhile the stage it is in (`data-s3`,
`data-init 3/8`), reported to the caller so the controller can show it.

The deadline: the controller does not know how long the data takes (an S3 prefix's or a snapshot's
size is not in the spec; ~150 GB at 125 MiB/s is ~20 minutes), but a stage that changes shows a boot
that is alive. So the allowance restarts at every change of stage, and while a `data-` stage is on it
is `data_deadline_s` (that stage may not change for as long as the copy takes); a boot stuck in one
stage still ends, with the stage it was stuck in named.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import PurePosixPath

from spotrain import contract
from spotrain.cloud.base import Shell
from spotrain.errors import SpotrainError

BOOT_DIR = str(PurePosixPath(contract.READY).parent)  # /opt/spotrain, infra/bootstrap.sh's default
FAST_S, FAST_PAUSE_S = 10.0, 0.2  # the first seconds of the wait: probes at most this far apart
DATA_DEADLINE_S = 4 * 3600.0  # a data stage: 1.5 TB at gp3's 125 MiB/s baseline, or a slow S3 prefix


def probe(boot_dir: str = BOOT_DIR) -> str:
    """The ready marker on stdout (exit 0); else the failure marker on stderr and the stage on stdout.
    `boot_dir` is the bootstrap's SPOTRAIN_BOOT_DIR on the instance (the dry-run's is in its directory)."""
    ready, failed, stage = (
        f"{boot_dir}/{PurePosixPath(m).name}"
        for m in (contract.READY, contract.BOOT_FAILED, contract.BOOT_STAGE)
    )
    return f"cat {ready} 2>/dev/null || {{ cat {failed} >&2 2>/dev/null; cat {stage} 2>/dev/null; exit 3; }}"


def wait_ready(
    transport: Shell,
    *,
    deadline_s: float,
    boot_dir: str = BOOT_DIR,
    data_deadline_s: float = DATA_DEADLINE_S,
    poll_s: float = 5.0,
    on_stage: Callable[[str], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, str]:
    """The ready marker's values; SpotrainError for the failure marker, or for a stage that did not
    change within its allowance. `on_stage` is called once for each new stage seen."""
    stage, since, pause = "", clock(), min(0.05, poll_s)
    first = since
    while True:
        result = transport.exec(probe(boot_dir), timeout=60)
        if result.exit_code == 0:
            return contract.parse_ready(result.stdout.decode(errors="replace"))
        failed = result.stderr.decode(errors="replace").strip()
        if failed:
            raise SpotrainError(
                f"the instance's bootstrap failed: {failed}",
                "see /opt/spotrain/bootstrap.log on the instance (spotrain down, then relaunch)",
            )
        seen = result.stdout.decode(errors="replace").strip()
        if seen and seen != stage:
            stage, since = seen, clock()
            if on_stage is not None:
                on_stage(stage)
        allowed = data_deadline_s if stage.startswith("data-") else deadline_s
        if clock() - since > allowed:
            where = f": in stage {stage!r} for" if stage else " after"
            raise SpotrainError(
                f"the instance was not ready{where} {allowed:.0f} s ({contract.READY} missing)",
                "see /opt/spotrain/bootstrap.log on the instance",
            )
        # The pause doubles from 50 ms to FAST_PAUSE_S for the first FAST_S, then to poll_s: a bootstrap
        # with little left to do is seen at once (a resumed run's next trainer waits for it: doubling
        # on to 0.8 s would cost up to that much), a long one (a torch venv, a data set) costs one
        # probe every poll_s.
        sleep(pause)
        pause = min(poll_s, FAST_PAUSE_S if clock() - first < FAST_S else poll_s, pause * 2)
