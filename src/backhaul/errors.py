"""The exception tree. Every error a user can cause derives from :class:`BackhaulError`.

Errors carry a short user-facing message (``str(err)``) that says what to do next; internal
detail goes in ``detail`` and is never shown without ``--verbose``. Secrets never appear in
either: callers pass redacted text. The whole tree lives here::

    BackhaulError
    ├── ConfigError                 a project file is wrong (file, line, key)   exit 2
    │   └── ConfigErrors            several at once (`validate` lists them)
    ├── SourceError                 the warehouse refused or failed a query (SourceFailure)
    ├── LocatedError                a run failed on something a file says (file, line, key)
    │   ├── ModelError              the model's SQL failed on a row while it was read
    │   └── HookError               a `hooks` statement failed in the warehouse
    ├── StateError                  Backhaul's own state cannot be used
    │   ├── StateLocked             another process holds the sync's state
    │   └── StoreError              the metadata store cannot be opened or queried
    │       └── RowLogError         a run's row-log file is no file or no Parquet
    ├── GuardError                  a safety guard stopped a run before sending
    ├── DestinationError            a destination call failed as a whole (FailureType)
    │   └── QuotaSpentError         the account's daily quota is used up
    ├── RunCancelled                a run was cancelled on request
    ├── RunConflict                 the sync already has a run in progress
    ├── SaveError                   a save from the web app was refused; nothing changed
    │   ├── InvalidContent          the project would not validate with the new text
    │   └── SaveConflict            the file or repository is mid-change
    ├── RevisionError               a Git revision cannot be read              exit 2
    ├── UserError                   a user or token operation was refused
    ├── AuthError                   a request is not signed in or not allowed (HTTP status)
    ├── RemoteError                 `backhaul serve` refused a request or is unreachable
    ├── SyncRunFailed               an orchestrator's task fails on this run
    ├── BadEvent                    a request is not a dbt Cloud job event
    ├── CloudApiError               the dbt Cloud API did not return the artifacts
    └── SandboxError                the sandbox could not start as asked

Exceptions that never leave the module that raises them (a parser's signal, an emulator's
refusal) are private to that module and not part of the tree.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from backhaul.gitsave import Problem
    from backhaul.integrations.common import SyncRunResult


def first_line(error: BaseException) -> str:
    """The first non-empty line of an error's text, stripped: a database's or a template
    engine's message without the hints and context lines under it. An error with no text
    gives its type's name."""
    for line in str(error).splitlines():
        if line.strip():
            return line.strip()
    return type(error).__name__


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


class SourceFailure(StrEnum):
    """What a warehouse's refusal means, read from the driver's error where it is caught
    (its class and SQLSTATE; see ``state.warehouse_conn.failure_of``)."""

    PERMISSION = "permission"  # a privilege is missing, or the connection is read-only
    MISSING = "missing"  # the table, schema or object named does not exist
    DATA = "data"  # a value the query cannot compute (a cast, a division by zero)


class SourceError(BackhaulError):
    """The warehouse refused or failed a query, or could not be reached.

    ``key`` names the key of the source file at fault (``path`` of a DuckDB file that does
    not exist) when the source can tell; the caller, which knows the file, adds its line.
    ``failure`` says what kind of refusal it was, when the driver told.
    """

    def __init__(
        self,
        message: str,
        *,
        key: str | None = None,
        detail: str | None = None,
        failure: SourceFailure | None = None,
    ) -> None:
        super().__init__(message, detail=detail)
        self.key = key
        self.failure = failure


class LocatedError(BackhaulError):
    """A run failed on something a project file says: names the file, its line and key like
    a :class:`ConfigError`, which it is not, because the same file may work on the next run
    or on other data."""

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


class ModelError(LocatedError):
    """The model's query failed while its rows were read (a value it cannot compute).

    Names the model's SQL file (or its ``.yml`` and key): the run fails, nothing is sent.
    """


class HookError(LocatedError):
    """A sync's ``hooks`` statement failed in the warehouse (or could not be rendered).

    Names the sync file, its line and the ``hooks.pre.N`` / ``hooks.post.N`` key.
    """


class StateError(BackhaulError):
    """Backhaul's own state cannot be used: a sync's snapshot file or the run store is
    damaged, or the disk they are on is full. The message names the file and what to run."""


class StateLocked(StateError):
    """Another process holds this sync's state (a run of the same sync is going on)."""


class StoreError(StateError):
    """The metadata store could not be opened, migrated or queried as asked."""


class RowLogError(StoreError):
    """A run's row-log file cannot be read: something other than a regular file stands at
    its path (a named pipe, a folder), or it is not Parquet. The run's record and its
    rejected and invalid rows, kept in the store itself, stay readable."""


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


class RunConflict(BackhaulError):
    """The sync already has a run in progress."""


class SaveError(BackhaulError):
    """A save that was refused; the file is as it was before."""


class InvalidContent(SaveError):
    """The new text fails validation: nothing was committed and the old text is back."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        lines = "\n".join(p.text for p in problems)
        super().__init__(f"not saved: the project would not validate\n{lines}")


class SaveConflict(SaveError):
    """The file or the repository is in a state a save must not paper over."""


class ApprovalRequired(BackhaulError):
    """A run was refused: the project's commit is not approved, or its files are not committed."""


class RevisionError(BackhaulError):
    """A revision cannot be read: not a Git repository, or no such commit."""

    exit_code = 2


class UserError(BackhaulError):
    """A user or token operation was refused (unknown name, duplicate, weak password)."""


class AuthError(BackhaulError):
    """A request is not signed in or not allowed: the web app answers ``status`` (401 or
    403, or a redirect to the sign-in page) with ``code``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class RemoteError(BackhaulError):
    """``backhaul serve`` refused a request or could not be reached."""


class SyncRunFailed(BackhaulError):
    """A sync's run ended in a way the orchestrator's task should fail on."""

    def __init__(self, message: str, result: SyncRunResult) -> None:
        super().__init__(message)
        self.result = result


class BadEvent(BackhaulError):
    """The request is not a dbt Cloud job event Backhaul can read."""


class CloudApiError(BackhaulError):
    """The dbt Cloud API did not return the run's artifacts."""


class SandboxError(BackhaulError):
    """The sandbox could not start as asked."""
