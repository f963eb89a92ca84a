# SPDX-License-Identifier: GPL-2.0-or-later
"""The QUIC socket contract: the subset of ``socket.socket`` a handshake needs.

A kernel ``IPPROTO_QUIC`` socket *is* a :class:`QuicSocket` (``socket.socket`` has all of
these methods with these signatures). Userspace stacks (``quichsd.userspace``) implement
the same calls and decode the same bytes, so the driver cannot tell them apart.

Contract (as the lxin/quic kernel module behaves, docs/kernel-interfaces.md §2):

* ``fileno()`` becomes readable when ``recvmsg`` has something (data or an event).
* ``recvmsg(bufsize, ancbufsize, flags)`` never blocks once the socket is non-blocking:
  it raises ``BlockingIOError`` when there is nothing. Handshake data comes with one
  ``(SOL_QUIC, QUIC_HANDSHAKE_INFO, bytes([level]))`` cmsg; partial reads are allowed;
  ``MSG_CTRUNC`` in flags when the control buffer was too small; ``b""`` with no cmsg
  means the connection was closed.
* ``sendmsg([data], [(SOL_QUIC, QUIC_HANDSHAKE_INFO, bytes([level]))], flags)`` sends one
  handshake message at that level; ``MSG_MORE`` delays transmission.
* ``getsockopt(SOL_QUIC, opt, buflen)`` returns bytes; ``setsockopt(SOL_QUIC, opt, bytes)``.
  Errors are ``OSError`` with the kernel's errno.
* ``getsockopt(SOL_SOCKET, SO_PROTOCOL)`` returns 261 for a QUIC socket.
"""

from __future__ import annotations

import ctypes
import os
import socket
from collections.abc import Iterable
from typing import Any, Protocol, overload, runtime_checkable

from . import uapi
from .libc import libc

Ancillary = list[tuple[int, int, bytes]]

#: control-buffer size for one handshake-info cmsg (CMSG_SPACE(1) = 24 on x86-64);
#: we allow 8 payload bytes so older kernels that padded the struct fit too.
HANDSHAKE_INFO_CMSG_SPACE = socket.CMSG_SPACE(8)


@runtime_checkable
class QuicSocket(Protocol):
    def fileno(self) -> int: ...

    @overload
    def getsockopt(self, level: int, optname: int, /) -> int: ...

    @overload
    def getsockopt(self, level: int, optname: int, buflen: int, /) -> bytes: ...

    def setsockopt(self, level: int, optname: int, value: bytes, /) -> None: ...

    def sendmsg(
        self,
        buffers: Iterable[bytes],
        ancdata: Iterable[tuple[int, int, bytes]] = ...,
        flags: int = ...,
        address: Any = ...,
        /,
    ) -> int: ...

    def recvmsg(
        self, bufsize: int, ancbufsize: int = ..., flags: int = ..., /
    ) -> tuple[bytes, Ancillary, int, Any]: ...

    def getpeername(self) -> Any: ...

    def setblocking(self, flag: bool, /) -> None: ...


def peer_address(sock: QuicSocket) -> str | None:
    """The IP address ``sock`` is connected to, if it says (a client verifies it when the
    request names no peer; a unix socket or socket-ops connection has none)."""
    try:
        addr = sock.getpeername()
    except OSError:
        return None
    if isinstance(addr, tuple) and addr and isinstance(addr[0], str) and addr[0]:
        return addr[0]
    return None


#: CPython's ``socket.getsockopt`` refuses a ``buflen`` above this ("getsockopt buflen out of
#: range"), but the kernel's SESSION_TICKET option needs up to QUIC_TICKET_MAX_LEN (4096).
PY_GETSOCKOPT_MAX = 1024


def _libc_getsockopt(fd: int, level: int, optname: int, buflen: int) -> bytes:
    buf = ctypes.create_string_buffer(buflen)
    size = ctypes.c_uint32(buflen)
    rc = libc().getsockopt(
        ctypes.c_int(fd),
        ctypes.c_int(level),
        ctypes.c_int(optname),
        buf,
        ctypes.byref(size),
    )
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return buf.raw[: size.value]


def getsockopt_bytes(sock: QuicSocket, level: int, optname: int, buflen: int) -> bytes:
    """``sock.getsockopt(level, optname, buflen)`` as bytes, also for ``buflen`` > 1024.

    A kernel socket (``socket.socket``) goes through libc's getsockopt when the buffer is
    larger than CPython allows; any other QuicSocket is asked directly.
    """
    if buflen > PY_GETSOCKOPT_MAX and isinstance(sock, socket.socket):
        return _libc_getsockopt(sock.fileno(), level, optname, buflen)
    return bytes(sock.getsockopt(level, optname, buflen))


def handshake_cmsg(level: uapi.CryptoLevel) -> tuple[int, int, bytes]:
    """The ancillary item that tags a handshake message with its crypto level."""
    return (uapi.SOL_QUIC, uapi.QUIC_HANDSHAKE_INFO, uapi.pack_handshake_info(level))


def find_handshake_level(ancdata: Ancillary) -> uapi.CryptoLevel | None:
    """The level from a ``QUIC_HANDSHAKE_INFO`` cmsg, or None if there is none.

    A cmsg with another level (e.g. the pre-2025 ``IPPROTO_QUIC``) does not count.
    Raises ValueError for an empty payload or an unknown level number.
    """
    for level, ctype, data in ancdata:
        if level == uapi.SOL_QUIC and ctype == uapi.QUIC_HANDSHAKE_INFO:
            return uapi.unpack_handshake_info(data)
    return None
