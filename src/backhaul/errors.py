"""The exception tree. Every error a user can cause derives from :class:`BackhaulError`.

Errors carry a short user-facing message (``str(err)``) that says what to do next; internal
detail goes in ``detail`` and is never shown without ``--verbose``. Secrets never appear in
either: callers pass redacted text.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum


class BackhaulError(Exception):
    """Root of every error Backhaul raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, *, detail: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class ConfigError(BackhaulError):
    """A project file is wrong. Names the file, line and key when it knows them."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        key: str | None = None,
        detail: str | None = None,
    ) -> None:
        self.file = file
        self.line = line
        self.key = key
        super().__init__(self.format(message, file, line, key), detail=detail)
        self.reason = message

    @staticmethod
    def format(message: str, file: str | None, line: int | None, key: str | None) -> str:
        where = ""
        if file:
            where = file if line is None else f"{file}:{line}"
        if key:
            where = f"{where}: {key}" if where else key
        return f"{where}: {message}" if where else message


class ConfigErrors(ConfigError):
    """Several configuration problems found at once (``backhaul validate`` reports all)."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        first = errors[0]
        BackhaulError.__init__(self, "\n".join(e.message for e in errors))
        self.file, self.line, self.key, self.reason = (
            first.file,
            first.line,
            first.key,
            first.reason,
        )


class SourceError(BackhaulError):
    """The warehouse refused or failed a query, or could not be reached.

    ``key`` names the key of the source file at fault (``path`` of a DuckDB file that does
    not exist) when the source can tell; the caller, which knows the file, adds its line.
    """

    def __init__(self, message: str, *, key: str | None = None, detail: str | None = None) -> None:
        super().__init__(message, detail=detail)
        self.key = key


class ModelError(BackhaulError):
    """The model's query failed while its rows were read (a value it cannot compute).

    Names the model's SQL file (or its ``.yml`` and key) like a :class:`ConfigError`; it is
    not one because the same SQL may work on other data: the run fails, nothing is sent.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str,
        line: int | None = None,
        key: str | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(ConfigError.format(message, file, line, key), detail=detail)
        self.file = file
        self.line = line
        self.key = key
        self.reason = message


class HookError(BackhaulError):
    """A sync's ``hooks`` statement failed in the warehouse (or could not be rendered).

    Names the sync file, its line and the ``hooks.pre.N`` / ``hooks.post.N`` key like a
    :class:`ConfigError`; it is not one because the same SQL may work on the next run.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str,
        line: int | None = None,
        key: str | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(ConfigError.format(message, file, line, key), detail=detail)
        self.file = file
        self.line = line
        self.key = key
        self.reason = message


class StateError(BackhaulError):
    """Backhaul's own state cannot be used: a sync's snapshot file or the run store is
    damaged, or the disk they are on is full. The message names the file and what to run."""


class GuardError(BackhaulError):
    """A safety guard stopped a run before anything was sent (use ``--force`` to override)."""


class FailureType(StrEnum):
    """What the runner should do with a destination failure."""

    CONFIG = "config"  # wrong credentials, missing object, bad mapping: fail fast, no retry
    TRANSIENT = "transient"  # rate limit, 5xx, timeout, dropped connection: retry with backoff
    REJECTED = "rejected"  # the destination refused these records: keep them for the next run


class DestinationError(BackhaulError):
    """A destination call failed as a whole (not one record)."""

    def __init__(
        self,
        message: str,
        *,
        failure: FailureType = FailureType.TRANSIENT,
        status: int | None = None,
        retry_after: float | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message, detail=detail)
        self.failure = failure
        self.status = status
        self.retry_after = retry_after


class QuotaSpentError(DestinationError):
    """The account's daily quota of calls is used up: waiting for a retry does not help.

    The engine stops sending at once (no whole-batch retry); what was not sent stays
    pending for a later run.
    """

    def __init__(self, message: str, *, resets_at: datetime) -> None:
        super().__init__(message, failure=FailureType.TRANSIENT)
        self.resets_at = resets_at


class RunCancelled(BackhaulError):
    """A run was cancelled on request."""
