# SPDX-License-Identifier: GPL-2.0-or-later
"""The key log file (``log.keylog_file``): TLS secrets in NSS key log format, opt-in.

For decrypting packet captures while debugging. Only the config turns it on (GnuTLS's own
``SSLKEYLOGFILE`` is removed from the environment before the library loads, see
:mod:`quichsd.gnutls._lib`); the daemon logs a warning at start and on each reload while
it is on. The file is opened ``O_APPEND|O_CREAT|O_NOFOLLOW`` and made mode 0600 (also when
it existed with a wider mode); it must be a regular file. Each line goes out in one
``write()``, so several processes (workers) may share the file.
"""

from __future__ import annotations

import os
import stat

from .credentials import CredentialsError


class KeyLogFile:
    """An open key log file; :meth:`write` takes one NSS key log line (no newline)."""

    def __init__(self, path: str) -> None:
        self.path = path
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(path, flags, 0o600)
        except OSError as e:
            raise CredentialsError(
                [f"{path}: cannot open log.keylog_file: {e.strerror or e}"]
            ) from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise CredentialsError([f"{path}: log.keylog_file is not a regular file"])
            if stat.S_IMODE(st.st_mode) != 0o600:
                os.fchmod(fd, 0o600)
        except OSError as e:
            os.close(fd)
            raise CredentialsError(
                [f"{path}: cannot make log.keylog_file mode 0600: {e}"]
            ) from None
        except BaseException:
            os.close(fd)
            raise
        self._fd: int | None = fd

    def write(self, line: str) -> None:
        fd = self._fd
        if fd is None:  # closed by a reload: a handshake still in flight writes nothing
            return
        try:
            os.write(fd, line.encode("ascii") + b"\n")
        except OSError:  # a full disk must not fail the handshake
            pass

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __del__(self) -> None:
        self.close()


def open_keylog(path: str | None) -> KeyLogFile | None:
    """The key log file ``path`` opened, or None when key logging is off."""
    return KeyLogFile(path) if path else None


def warning(path: str) -> str:
    """The warning logged at start and on each reload while key logging is on."""
    return (
        f"key logging is on (log.keylog_file): the TLS secrets of every handshake are "
        f"written to {path}; anyone who can read it can decrypt that traffic"
    )
