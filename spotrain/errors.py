"""The one error type a user can cause. The CLI prints it without a traceback and exits 2."""

from __future__ import annotations


class SpotrainError(Exception):
    """A mistake the user can fix: what went wrong (naming the value) and what to do next."""

    exit_code = 2

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message
