"""The library's exceptions and the exit codes the CLI maps them to."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0
    RUNTIME = 1
    USAGE = 2
    NO_DATA = 3


class TrailError(Exception):
    """A failure the user can act on: a message saying what went wrong and a hint saying how to fix it."""

    exit_code = ExitCode.RUNTIME

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(TrailError):
    """Bad input from the user: an option, a time string, a step expression."""

    exit_code = ExitCode.USAGE


class NoDataError(TrailError):
    """Nothing the command reads exists for the request."""

    exit_code = ExitCode.NO_DATA


class CorruptDataError(TrailError):
    """A stored file cannot be read; the message names it."""

    exit_code = ExitCode.RUNTIME


class DiskFull(TrailError):
    """A write found no space left on its device (ENOSPC, or a quota): nothing of it was
    acknowledged; `retry_after` is when trying again makes sense, in seconds."""

    exit_code = ExitCode.RUNTIME

    def __init__(self, message: str, hint: str | None = None, retry_after: float = 5.0) -> None:
        super().__init__(message, hint)
        self.retry_after = retry_after
