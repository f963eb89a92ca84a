# SPDX-License-Identifier: GPL-2.0-or-later
"""The listening socket: systemd socket activation, or a safe bind of ``unix_socket.path``.

Bind rules: the parent directory is created if missing; an existing parent must be a real
directory (not a symlink) owned by us or root and not writable by group or others.
An existing path is replaced only if it is a socket nobody answers on (stale); a live
socket means another daemon is running. The probe connect is non-blocking, so a live
listener with a full backlog is reported at once instead of hanging start-up (an AF_UNIX
connect never goes in progress: it succeeds, is refused or finds the backlog full at once).
The socket file gets ``unix_socket.mode`` (default 0660) and, if set, ``unix_socket.group``
before it listens (until ``listen()`` a connect is refused, so there is no window with other
permissions). The directory gets the same group and mode 0750 (0700 if the mode gives the
group nothing) when we create it, and also when it exists, the group is set, and others
cannot search it (e.g. systemd's ``RuntimeDirectory=``, made root:root 0750): the group
needs the search bit to reach the socket. A directory others can search (e.g. ``/run``) is
left alone. Without CAP_CHOWN the daemon can give a file only a group it belongs to.
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


def dir_mode(mode: int) -> int:
    """The directory's mode for socket ``mode``: the group may search it if it has access."""
    return 0o750 if mode & 0o070 else 0o700


def _chgrp(path: str, gid: int) -> None:
    try:
        os.chown(path, -1, gid, follow_symlinks=False)
    except OSError as e:
        hint = ""
        if e.errno == errno.EPERM:
            hint = (
                " (the daemon must belong to the group or have CAP_CHOWN; under systemd "
                "add SupplementaryGroups= for it)"
            )
        raise ListenError(
            f"{path}: cannot give it group {gid} (unix_socket.group): {e.strerror}{hint}"
        ) from None


def _check_dir(d: str, mode: int, group: int | None) -> None:
    try:
        os.mkdir(d, 0o700)
    except FileExistsError:
        pass
    except OSError as e:
        raise ListenError(f"{d}: cannot create directory: {e.strerror}") from None
    else:
        if group is not None:
            _chgrp(d, group)
        os.chmod(d, dir_mode(mode))  # mkdir's mode is filtered by the umask
        return
    st = os.lstat(d)
    if not stat.S_ISDIR(st.st_mode):
        raise ListenError(f"{d}: not a directory (or a symlink)")
    if st.st_uid not in (0, os.geteuid()):
        raise ListenError(f"{d}: owned by uid {st.st_uid}, not by us or root")
    if st.st_mode & 0o022:
        raise ListenError(f"{d}: writable by group or others (mode {st.st_mode & 0o777:o})")
    if group is None or st.st_mode & 0o001:
        return
    if st.st_gid != group:
        _chgrp(d, group)
    want = (st.st_mode & 0o700) | (dir_mode(mode) & 0o070)
    if st.st_mode & 0o777 != want:
        try:
            os.chmod(d, want)
        except OSError as e:
            raise ListenError(f"{d}: cannot make it mode {want:o}: {e.strerror}") from None


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


def bind(path: str, mode: int = 0o660, group: int | None = None) -> socket.socket:
    """A non-blocking SEQPACKET listener on ``path`` with permission bits ``mode`` and
    group ``group`` (None: ours), its directory reachable by that group (module rules)."""
    if not os.path.isabs(path):
        raise ListenError(f"{path}: unix_socket.path must be absolute")
    _check_dir(os.path.dirname(path), mode, group)
    _remove_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        sock.bind(path)
    except OSError as e:
        sock.close()
        raise ListenError(f"{path}: cannot listen: {e.strerror}") from None
    try:
        if group is not None:
            _chgrp(path, group)
        os.chmod(path, mode)
        sock.listen(BACKLOG)
    except (OSError, ListenError) as e:
        sock.close()
        os.unlink(path)  # ours: bound just now, in a directory only we may write
        if isinstance(e, ListenError):
            raise
        raise ListenError(f"{path}: cannot listen: {e.strerror}") from None
    sock.setblocking(False)
    return sock
