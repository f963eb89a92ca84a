# SPDX-License-Identifier: GPL-2.0-or-later
"""Open a file that must be a regular file, without ever blocking on what it is instead.

A FIFO opened for reading waits for a writer, and a read from it (or from a tty or a
device) may wait forever; :func:`open_regular` opens with ``O_NONBLOCK`` and checks the
type on the open descriptor (``fstat``, no race with a rename) before anything is read.
"""

from __future__ import annotations

import os
import stat

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


class NotRegularFile(Exception):
    """The path names something else; ``kind`` says what ("a FIFO", ...)."""

    def __init__(self, kind: str) -> None:
        super().__init__(f"{kind}, not a regular file")
        self.kind = kind


def file_kind(mode: int) -> str | None:
    """None for a regular file, else what it is, for an error message."""
    if stat.S_ISREG(mode):
        return None
    return next((what for test, what in _KINDS if test(mode)), "a file of an unknown type")


def open_regular(path: str, *, nofollow: bool = False) -> tuple[int, os.stat_result]:
    """A read-only fd of the regular file ``path`` and its ``fstat``.

    Raises :class:`OSError` (cannot open) or :class:`NotRegularFile` (fd already closed).
    """
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
    fd = os.open(path, flags | (os.O_NOFOLLOW if nofollow else 0))
    try:
        st = os.fstat(fd)
        kind = file_kind(st.st_mode)
        if kind is not None:
            raise NotRegularFile(kind)
    except BaseException:
        os.close(fd)
        raise
    return fd, st
