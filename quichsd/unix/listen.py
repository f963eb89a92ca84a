"""The listening socket: systemd socket activation, or a safe bind of ``unix_socket.path``.

Bind rules: the parent directory is created 0750 if missing; an existing parent must be a
real directory (not a symlink) owned by us or root and not writable by group or others.
An existing path is replaced only if it is a socket nobody answers on (stale); a live
socket means another daemon is running. The probe connect is non-blocking, so a live
listener with a full backlog is reported at once instead of hanging start-up (an AF_UNIX
connect never goes in progress: it succeeds, is refused or finds the backlog full at once).
The socket file is made 0660.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat

SD_LISTEN_FDS_START = 3
BACKLOG = 64


class ListenError(Exception):
    """The unix socket cannot be set up; the message names the path and the reason."""


def from_systemd() -> socket.socket | None:
    """The first socket passed by systemd (``LISTEN_FDS``/``LISTEN_PID``), if it is an
    ``AF_UNIX``/``SOCK_SEQPACKET`` listener; the variables are removed either way."""
    pid, count = os.environ.pop("LISTEN_PID", ""), os.environ.pop("LISTEN_FDS", "")
    os.environ.pop("LISTEN_FDNAMES", None)
    if not (pid.isdigit() and int(pid) == os.getpid() and count.isdigit() and int(count) >= 1):
        return None
    try:
        sock = socket.socket(fileno=SD_LISTEN_FDS_START)
    except OSError as e:
        raise ListenError(f"LISTEN_FDS: fd 3 is not a socket: {e.strerror}") from None
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_SEQPACKET:
        sock.detach()
        raise ListenError("LISTEN_FDS: fd 3 is not an AF_UNIX SOCK_SEQPACKET socket")
    sock.setblocking(False)
    return sock


def _check_dir(d: str) -> None:
    try:
        os.mkdir(d, 0o750)
        os.chmod(d, 0o750)  # mkdir's mode is filtered by the umask
        return
    except FileExistsError:
        pass
    except OSError as e:
        raise ListenError(f"{d}: cannot create directory: {e.strerror}") from None
    st = os.lstat(d)
    if not stat.S_ISDIR(st.st_mode):
        raise ListenError(f"{d}: not a directory (or a symlink)")
    if st.st_uid not in (0, os.geteuid()):
        raise ListenError(f"{d}: owned by uid {st.st_uid}, not by us or root")
    if st.st_mode & 0o022:
        raise ListenError(f"{d}: writable by group or others (mode {st.st_mode & 0o777:o})")


def _remove_stale(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ListenError(f"{path}: exists and is not a socket")
    # non-blocking: a connect to a live listener whose backlog is full would wait (for
    # ever, if it never accepts) before the daemon is READY; EAGAIN means it is live
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_NONBLOCK)
    try:
        probe.connect(path)
    except BlockingIOError:
        raise ListenError(
            f"{path}: another process is listening on it (its connection backlog is full)"
        ) from None
    except OSError as e:
        if e.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise ListenError(f"{path}: cannot check the existing socket: {e.strerror}") from None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    finally:
        probe.close()
    raise ListenError(f"{path}: another process is listening on it")


def bind(path: str) -> socket.socket:
    """A non-blocking SEQPACKET listener on ``path`` (see the module rules)."""
    if not os.path.isabs(path):
        raise ListenError(f"{path}: unix_socket.path must be absolute")
    _check_dir(os.path.dirname(path))
    _remove_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        sock.bind(path)
        os.chmod(path, 0o660)
        sock.listen(BACKLOG)
    except OSError as e:
        sock.close()
        raise ListenError(f"{path}: cannot listen: {e.strerror}") from None
    sock.setblocking(False)
    return sock
