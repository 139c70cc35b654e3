"""torchrun, passing the workers' exit code through: `python -m trainer.launch` takes torchrun's arguments.

torchrun exits 1 whenever a worker exits non-zero, which would hide the contract's exit 75 (stopped
for a spot interruption after a complete checkpoint) from the controller. This wrapper runs torchrun's
own `run()` and, when every worker ended with the same code (all 75 after an agreed stop, or all 2 for
bad input), exits with that code; a mix of codes, or a crash, stays a failure (1).

    python -m trainer.launch --nproc_per_node=8 -m trainer.train --recipe imagenet --run-dir runs/r ...
"""

from __future__ import annotations

import signal
import sys

from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import parse_args, run

from trainer import EXIT_INTERRUPTED


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv if argv is not None else sys.argv[1:])
    try:
        run(args)
    except ChildFailedError as err:
        codes = {failure.exitcode for failure in err.failures.values()}
        # torchrun SIGTERMs the other workers as soon as one exits. After an agreed stop every rank has
        # passed the barrier that follows the checkpoint, so one that dies of that SIGTERM (-15) while
        # shutting down had nothing left to save: the stop is still the interruption's (75).
        if EXIT_INTERRUPTED in codes and codes <= {EXIT_INTERRUPTED, -signal.SIGTERM}:
            return EXIT_INTERRUPTED
        if len(codes) == 1:
            return codes.pop()
        print(f"trainer.launch: workers ended with exit codes {sorted(codes)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
