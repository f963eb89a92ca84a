# SPDX-License-Identifier: GPL-2.0-or-later
"""Records on a ``SOCK_SEQPACKET`` unix connection: non-blocking send/receive, SCM_RIGHTS.

Every fd the kernel installs with a received record is either returned to the caller (who
then owns it) or closed here; none is leaked on any path, including ``MSG_CTRUNC``.

``recvmsg`` returns 0 bytes both for a zero-length record and at end of file; a 0-byte
read counts as end of file only when the peer has shut down its sending side (``POLLRDHUP``
or ``POLLHUP``), so a zero-length record is a record (malformed: it has no header).
"""

from __future__ import annotations

import array
import ctypes
import errno
import os
import select
import socket
import struct
from dataclasses import dataclass, field

from ..libc import libc
from .codec import MAX_MESSAGE

_UCRED = struct.Struct("3i")
#: <asm-generic/socket.h>; Python's socket module does not name it
SO_PEERGROUPS = 59
_GID = struct.Struct("I")
_PY_MAX_OPTLEN = 1024
_NGROUPS_MAX = 65536


@dataclass
class Record:
    data: bytes
    fds: list[int] = field(default_factory=list)
    #: the record was longer than MAX_MESSAGE (MSG_TRUNC)
    oversized: bool = False
    #: more fds were sent than the control buffer held (MSG_CTRUNC); those that did arrive
    #: are in ``fds``, the kernel closed the rest
    ctrunc: bool = False
    #: end of file: nothing was read and the peer has shut down its sending side
    eof: bool = False

    def close_fds(self) -> None:
        while self.fds:
            os.close(self.fds.pop())


@dataclass(frozen=True)
class PeerCred:
    pid: int
    uid: int
    gid: int

    def __str__(self) -> str:
        return f"pid {self.pid} uid {self.uid} gid {self.gid}"


def peer_credentials(conn: socket.socket) -> PeerCred:
    """The connecting process as the kernel recorded it at ``connect()`` (SO_PEERCRED)."""
    raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    pid, uid, gid = _UCRED.unpack(raw)
    return PeerCred(pid, uid, gid)


def peer_groups(conn: socket.socket) -> tuple[int, ...]:
    """The connecting process's supplementary groups as the kernel recorded them at
    ``connect()`` (SO_PEERGROUPS, Linux 4.13): race-free, unlike reading
    ``/proc/PID/status`` (the pid may be gone or reused) or the group database (which
    says what the user may have, not what the process has). Python's ``getsockopt``
    reads at most 1024 bytes (256 groups), so a longer list is read with libc's."""
    try:
        raw = conn.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, _PY_MAX_OPTLEN)
    except OSError as e:
        if e.errno != errno.ERANGE:
            raise
        raw = _getsockopt_long(conn.fileno(), SO_PEERGROUPS, _NGROUPS_MAX * _GID.size)
    return tuple(g for (g,) in _GID.iter_unpack(raw[: len(raw) - len(raw) % _GID.size]))


def _getsockopt_long(fd: int, opt: int, size: int) -> bytes:
    buf = ctypes.create_string_buffer(size)
    n = ctypes.c_uint32(size)
    if libc().getsockopt(fd, socket.SOL_SOCKET, opt, buf, ctypes.byref(n)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return buf.raw[: n.value]


def _fds(ancdata: list[tuple[int, int, bytes]]) -> list[int]:
    out: list[int] = []
    for level, ctype, data in ancdata:
        if level == socket.SOL_SOCKET and ctype == socket.SCM_RIGHTS:
            a = array.array("i")
            a.frombytes(data[: len(data) - len(data) % a.itemsize])
            out.extend(a)
    return out


def recv_record(conn: socket.socket, max_fds: int) -> Record:
    """One record, without blocking (BlockingIOError if none). The control buffer holds
    ``max_fds`` fds (at least 1, so extra fds show up as more fds or MSG_CTRUNC)."""
    space = socket.CMSG_SPACE(max(1, max_fds) * 4)
    data, anc, flags, _ = conn.recvmsg(MAX_MESSAGE + 1, space, socket.MSG_DONTWAIT)
    rec = Record(data, _fds(anc))
    rec.oversized = bool(flags & socket.MSG_TRUNC) or len(data) > MAX_MESSAGE
    rec.ctrunc = bool(flags & socket.MSG_CTRUNC)
    if not data and not rec.fds and not rec.oversized and not rec.ctrunc:
        rec.eof = hung_up(conn)
    return rec


def hung_up(conn: socket.socket) -> bool:
    """The peer has closed or shut down its sending side (no more records will come)."""
    p = select.poll()
    p.register(conn.fileno(), select.POLLRDHUP)
    return any(ev & (select.POLLRDHUP | select.POLLHUP) for _fd, ev in p.poll(0))


def send_record(conn: socket.socket, record: bytes, fds: list[int] | None = None) -> None:
    """Send one record without blocking. BlockingIOError when the peer does not read
    (its receive queue is full): callers treat that as a stuck peer, never wait."""
    anc = []
    if fds:
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
    conn.sendmsg([record], anc, socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL)
