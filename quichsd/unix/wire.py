"""Records on a ``SOCK_SEQPACKET`` unix connection: non-blocking send/receive, SCM_RIGHTS.

Every fd the kernel installs with a received record is either returned to the caller (who
then owns it) or closed here; none is leaked on any path, including ``MSG_CTRUNC``.

``recvmsg`` returns 0 bytes both for a zero-length record and at end of file; a 0-byte
read counts as end of file only when the peer has shut down its sending side (``POLLRDHUP``
or ``POLLHUP``), so a zero-length record is a record (malformed: it has no header).
"""

from __future__ import annotations

import array
import os
import select
import socket
import struct
from dataclasses import dataclass, field

from .codec import MAX_MESSAGE

_UCRED = struct.Struct("3i")


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
