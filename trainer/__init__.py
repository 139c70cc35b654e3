"""The trainer spotrain ships to the spot instance: one-cycle, multi-GPU, interruption-safe.

It never imports spotrain; it meets the controller only at the contract in ARCHITECTURE.md (command line, run
directory, events.jsonl, exit codes, checkpoint layout), and runs unchanged under a plain torchrun.
"""

EXIT_DONE = 0  # target reached or schedule done
EXIT_BAD_INPUT = 2  # a mistake the user can fix; the message says which
EXIT_UNAVAILABLE = 69  # S3 (the checkpoints) unreachable past the retries: start it again (EX_UNAVAILABLE)
EXIT_INTERRUPTED = 75  # stopped for a spot interruption after a complete checkpoint (EX_TEMPFAIL)


class TrainerError(Exception):
    """A mistake in the trainer's input: printed without a traceback, exit 2."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class Unavailable(TrainerError):
    """The infrastructure, not the input: S3 did not answer within the retries. Exit 69, so the
    controller starts the trainer again instead of failing the run."""

    exit_code = EXIT_UNAVAILABLE
