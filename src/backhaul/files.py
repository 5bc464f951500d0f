"""Reading the files of a project without trusting what is at their path.

A project file may be a directory, a dangling symbolic link, a named pipe (opening one for
reading blocks until a writer comes), a device, or a file far larger than any project file.
:func:`problem` says which, from ``stat`` alone; :func:`read_text` opens only regular
files, never blocks on one that turned into a pipe meanwhile, and reads at most ``limit``
bytes.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

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

    A missing path gives "does not exist"; a symbolic link whose target is missing says so.
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            return f"is a broken symbolic link (to {os.readlink(path)}, which does not exist)"
        return "does not exist"
    except OSError as exc:  # a link loop, a path through a file, no permission on a folder
        return f"cannot be read ({exc.strerror or exc})"
    return kind_problem(st.st_mode)


def read_text(path: Path, *, limit: int = MAX_TEXT_BYTES) -> str:
    """The UTF-8 text of the regular file at ``path``, at most ``limit`` bytes long.

    Raises:
        NotReadable: The path is missing, not a regular file, too large, unreadable or not
            UTF-8 text.
    """
    found = problem(path)
    if found is not None:
        raise NotReadable(found)
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise NotReadable(f"cannot be read ({exc.strerror or exc})") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        # Checked again on the open file: the path may have been swapped since stat().
        if (kind := kind_problem(info.st_mode)) is not None:
            raise NotReadable(kind)
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


def _too_large(size: int, limit: int) -> str:
    return (
        f"is too large ({size / 1024 / 1024:,.1f} MB; project files may be at most "
        f"{limit // 1024 // 1024} MB)"
    )


__all__ = ["MAX_TEXT_BYTES", "NotReadable", "kind_problem", "problem", "read_text"]
