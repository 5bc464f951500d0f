"""Reading the files of a project without trusting what is at their path.

A project file may be a directory, a dangling symbolic link, a named pipe (opening one for
reading blocks until a writer comes), a device, or a file far larger than any project file.
:func:`problem` says which, from ``stat`` alone (:func:`not_a_file` for a path that may
also be empty); :func:`open_regular` opens only regular files and never blocks on one
that turned into a pipe meanwhile; :func:`read_text` reads such a file's text, at most
``limit`` bytes.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

# What :func:`problem` says of a path where nothing is.
MISSING = "does not exist"

# Far above any real project file (YAML or SQL); far below what would hurt to hold in memory.
MAX_TEXT_BYTES = 16 * 1024 * 1024

_KINDS = (
    (stat.S_ISDIR, "is a directory, not a file"),
    (stat.S_ISFIFO, "is a named pipe (FIFO), not a file"),
    (stat.S_ISSOCK, "is a socket, not a file"),
    (stat.S_ISCHR, "is a character device, not a file"),
    (stat.S_ISBLK, "is a block device, not a file"),
)


class NotReadable(Exception):
    """A path that cannot be read as a project file; ``reason`` completes "<path> ..."."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def kind_problem(mode: int) -> str | None:
    """What is wrong with a file of this ``st_mode``, or None for a regular file."""
    for test, reason in _KINDS:
        if test(mode):
            return reason
    return None if stat.S_ISREG(mode) else "is not a regular file"


def problem(path: Path) -> str | None:
    """Why ``path`` cannot be read as a regular file, or None when it can be opened.

    A missing path gives :data:`MISSING`; a symbolic link whose target is missing says so.
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            return f"is a broken symbolic link (to {os.readlink(path)}, which does not exist)"
        return MISSING
    except OSError as exc:  # a link loop, a path through a file, no permission on a folder
        return f"cannot be read ({exc.strerror or exc})"
    return kind_problem(st.st_mode)


def not_a_file(path: Path) -> str | None:
    """What stands at ``path`` that is no regular file (a folder, a named pipe, a device, a
    broken link), or None when a regular file or nothing at all is there: for a path
    Backhaul may create, which must never be opened when something else holds it."""
    reason = problem(path)
    return None if reason == MISSING else reason


def open_regular(path: Path) -> BinaryIO:
    """``path`` opened for reading in binary, when it is a regular file.

    Opened without blocking (a named pipe would otherwise wait for a writer) and checked
    on the open file, since the path may have been swapped since any earlier ``stat``.

    Raises:
        NotReadable: The path is missing (reason :data:`MISSING`), not a regular file, or
            cannot be opened.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise NotReadable(MISSING) from None
    except OSError as exc:
        raise NotReadable(f"cannot be read ({exc.strerror or exc})") from None
    kind = kind_problem(os.fstat(fd).st_mode)
    if kind is not None:
        os.close(fd)
        raise NotReadable(kind)
    return os.fdopen(fd, "rb")


def read_text(path: Path, *, limit: int = MAX_TEXT_BYTES) -> str:
    """The UTF-8 text of the regular file at ``path``, at most ``limit`` bytes long.

    Raises:
        NotReadable: The path is missing, not a regular file, too large, unreadable or not
            UTF-8 text.
    """
    found = problem(path)
    if found is not None:
        raise NotReadable(found)
    with open_regular(path) as handle:
        info = os.fstat(handle.fileno())
        if info.st_size > limit:
            raise NotReadable(_too_large(info.st_size, limit))
        try:
            data = handle.read(limit + 1)
        except OSError as exc:
            raise NotReadable(f"cannot be read ({exc.strerror or exc})") from None
    if len(data) > limit:
        raise NotReadable(_too_large(len(data), limit))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotReadable(f"is not UTF-8 text (byte {exc.start} cannot be decoded)") from None


def read_text_if_any(path: Path, *, limit: int = MAX_TEXT_BYTES) -> str | None:
    """:func:`read_text`, or None when nothing is at ``path`` (a file Backhaul may create).

    Raises:
        NotReadable: Something other than a readable UTF-8 file is there.
    """
    try:
        return read_text(path, limit=limit)
    except NotReadable as exc:
        if exc.reason == MISSING:
            return None
        raise


def _too_large(size: int, limit: int) -> str:
    return (
        f"is too large ({size / 1024 / 1024:,.1f} MB; project files may be at most "
        f"{limit // 1024 // 1024} MB)"
    )


__all__ = [
    "MAX_TEXT_BYTES",
    "MISSING",
    "NotReadable",
    "kind_problem",
    "not_a_file",
    "open_regular",
    "problem",
    "read_text",
    "read_text_if_any",
]
