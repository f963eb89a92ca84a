# SPDX-License-Identifier: GPL-2.0-or-later
"""An in-memory pair of QUIC sockets: handshake messages cross, secrets are recorded.

No QUIC packets and no UDP: each ``sendmsg`` at a level becomes a ``recvmsg`` at the same
level on the peer. It implements the kernel socket contract's byte formats (it decodes the
packed ``quic_crypto_secret``, cmsg and ``quic_connection_close`` with :mod:`quichsd.uapi`)
so the driver runs unchanged. Used by benchmarks and by driver unit tests of socket-side
behaviour; it is not a QUIC peer, and interop tests use real ones.

It stands in for the kernel, whose own cost is not quichsd's, so the hot calls are lean:
readiness is one nonblocking eventfd per end (written once when a batch of messages
arrives, read once when the reader drains it; no socketpair, no syscall per message), the
handshake-info cmsg is matched by table, and a ``quic_crypto_secret`` is checked (size,
level, cipher) on ``setsockopt`` but decoded into :class:`~quichsd.uapi.CryptoSecret` only
when ``secrets`` is read.
"""

from __future__ import annotations

import errno
import os
import socket
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, overload

from .. import uapi
from ..quicsocket import Ancillary, find_handshake_level

_Level = uapi.CryptoLevel
#: the handshake-info cmsg item per level (what the driver sends; what recvmsg returns)
_CMSG_ITEM = {
    lvl: (uapi.SOL_QUIC, uapi.QUIC_HANDSHAKE_INFO, uapi.pack_handshake_info(lvl)) for lvl in _Level
}
_LEVEL_OF_ITEM = {item: lvl for lvl, item in _CMSG_ITEM.items()}
_CMSG_SPACE_1 = socket.CMSG_SPACE(1)
_MSG_CTRUNC = int(socket.MSG_CTRUNC)
#: quic_crypto_secret byte 1 (level) values that can be installed, and byte 4-7 ciphers
_SECRET_LEVELS = {int(lvl): lvl for lvl in (_Level.HANDSHAKE, _Level.EARLY, _Level.APP)}
_SECRET_CIPHERS = frozenset(int(c) for c in uapi.Cipher)
_APP_TX, _APP_RX = (_Level.APP, True), (_Level.APP, False)


@dataclass
class MemorySettings:
    alpns: tuple[bytes, ...] = ()
    config: uapi.QuicConfig = field(default_factory=uapi.QuicConfig)
    #: client: session data for resumption; server: the 64-byte ticket key
    ticket: bytes = b""
    transport_params: bytes = b"memory-tp"


class MemoryQuicSocket:
    """One end of :func:`memory_pair`."""

    def __init__(self, settings: MemorySettings, name: str) -> None:
        self.settings = settings
        self.name = name
        self.peer: MemoryQuicSocket | None = None
        self.inbox: deque[tuple[uapi.CryptoLevel, bytes]] = deque()
        self.peer_tp: bytes | None = None
        self.selected_alpn: bytes | None = None
        self.close_info: uapi.ConnectionClose | None = None
        self.stored_ticket: bytes | None = None
        self.nst: bytes = b""  # post-handshake NewSessionTicket, via getsockopt
        self.closed = False
        self.established = False  # both APP keys installed
        #: installed secrets, raw quic_crypto_secret bytes (checked; decoded on demand)
        self._secrets: dict[tuple[uapi.CryptoLevel, bool], bytes] = {}
        self._efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._signalled = False
        self._opt_cache: tuple[object, object, bytes, bytes] | None = None

    # -- QuicSocket ---------------------------------------------------------------------
    def fileno(self) -> int:
        return self._efd

    @property
    def secrets(self) -> dict[tuple[uapi.CryptoLevel, bool], uapi.CryptoSecret]:
        """The installed secrets, keyed by (level, send)."""
        return {k: uapi.unpack_crypto_secret(raw) for k, raw in self._secrets.items()}

    def setblocking(self, flag: bool, /) -> None:
        pass

    def getpeername(self) -> Any:
        return ("memory", self.peer.name if self.peer else "")

    @overload
    def getsockopt(self, level: int, optname: int, /) -> int: ...

    @overload
    def getsockopt(self, level: int, optname: int, buflen: int, /) -> bytes: ...

    def getsockopt(self, level: int, optname: int, buflen: int = 0, /) -> int | bytes:
        if level == socket.SOL_SOCKET and optname == socket.SO_PROTOCOL:
            return uapi.IPPROTO_QUIC
        if level != uapi.SOL_QUIC:
            raise OSError(errno.ENOPROTOOPT, "unsupported level")
        st = self.settings
        if optname == uapi.QUIC_SOCKOPT_ALPN:
            value = self._packed(st)[2]
        elif optname == uapi.QUIC_SOCKOPT_CONFIG:
            return self._packed(st)[3][:buflen]
        elif optname == uapi.QUIC_SOCKOPT_SESSION_TICKET:
            value = self.nst if self.established else st.ticket
        elif optname == uapi.QUIC_SOCKOPT_TRANSPORT_PARAM_EXT:
            value = st.transport_params
        elif optname == uapi.QUIC_SOCKOPT_CONNECTION_CLOSE:
            info = self.peer.close_info if self.peer else None
            value = uapi.pack_connection_close(info or uapi.ConnectionClose(0))
        else:
            raise OSError(errno.ENOPROTOOPT, f"option {optname} not supported in memory")
        if buflen < len(value):
            raise OSError(errno.EINVAL, "buffer too small")
        return value

    def setsockopt(self, level: int, optname: int, value: bytes, /) -> None:
        if level != uapi.SOL_QUIC:
            raise OSError(errno.ENOPROTOOPT, "unsupported level")
        if optname == uapi.QUIC_SOCKOPT_CRYPTO_SECRET:
            raw = bytes(value)
            lvl = _SECRET_LEVELS.get(raw[1]) if len(raw) == uapi.CRYPTO_SECRET_SIZE else None
            if lvl is None or int.from_bytes(raw[4:8], "little") not in _SECRET_CIPHERS:
                try:  # the full decode names what is wrong
                    uapi.unpack_crypto_secret(raw)
                except ValueError as e:
                    raise OSError(errno.EINVAL, str(e)) from None
                raise OSError(errno.EINVAL, "malformed quic_crypto_secret")
            if self.established:
                raise OSError(errno.EINVAL, "already established")
            secrets = self._secrets
            secrets[(lvl, raw[0] != 0)] = raw
            self.established = _APP_TX in secrets and _APP_RX in secrets
        elif optname == uapi.QUIC_SOCKOPT_TRANSPORT_PARAM_EXT:
            if len(value) > uapi.QUIC_TP_EXT_MAX_LEN:
                raise OSError(errno.EINVAL, "transport parameters too long")
            self.peer_tp = bytes(value)
        elif optname == uapi.QUIC_SOCKOPT_ALPN:
            self.selected_alpn = bytes(value)
        elif optname == uapi.QUIC_SOCKOPT_CONNECTION_CLOSE:
            self.close_info = uapi.unpack_connection_close(bytes(value))
        elif optname == uapi.QUIC_SOCKOPT_SESSION_TICKET:
            self.stored_ticket = bytes(value)
        else:
            raise OSError(errno.ENOPROTOOPT, f"option {optname} not supported in memory")

    def sendmsg(
        self,
        buffers: Iterable[bytes],
        ancdata: Iterable[tuple[int, int, bytes]] = (),
        flags: int = 0,
        address: Any = None,
        /,
    ) -> int:
        data = b"".join(buffers)
        anc = list(ancdata)
        level = _LEVEL_OF_ITEM.get(anc[0]) if len(anc) == 1 else None
        if level is None:
            level = find_handshake_level(anc)
        if level is None or level is _Level.EARLY:
            raise OSError(errno.EINVAL, "handshake data needs INITIAL/HANDSHAKE/APP info")
        if not data:
            raise OSError(errno.EMSGSIZE, "empty message")
        if level is not _Level.INITIAL and (level, True) not in self._secrets:
            raise OSError(errno.EINVAL, f"no {level.name} tx key installed")
        peer = self.peer
        if peer is None or peer.closed or self.closed:
            raise OSError(errno.EPIPE, "not connected")
        if level is _Level.APP and peer.established:
            peer.nst += data  # the kernel hands post-handshake CRYPTO over via getsockopt
        else:
            peer._deliver(level, data)
        return len(data)

    def recvmsg(
        self, bufsize: int, ancbufsize: int = 0, flags: int = 0, /
    ) -> tuple[bytes, Ancillary, int, Any]:
        if not self.inbox:
            if self.peer is not None and self.peer.closed:
                return b"", [], 0, None
            self._unsignal()
            raise BlockingIOError(errno.EAGAIN, "no data")
        level, data = self.inbox.popleft()
        if len(data) > bufsize:
            self.inbox.appendleft((level, data[bufsize:]))
            data = data[:bufsize]
        if not self.inbox:
            self._unsignal()
        if ancbufsize < _CMSG_SPACE_1:
            return data, [], _MSG_CTRUNC, None
        return data, [_CMSG_ITEM[level]], 0, None

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.peer is not None:
                self.peer._signal()
            os.close(self._efd)

    def __del__(self) -> None:  # an end never closed must not leak its eventfd
        if not getattr(self, "closed", True):
            self.closed = True
            os.close(self._efd)

    # -- plumbing ------------------------------------------------------------------------
    def inject(self, level: uapi.CryptoLevel, data: bytes) -> None:
        """Deliver bytes as if the peer had sent them (for malformed-input tests)."""
        self._deliver(level, data)

    def _deliver(self, level: uapi.CryptoLevel, data: bytes) -> None:
        self.inbox.append((level, data))
        self._signal()

    def _packed(self, st: MemorySettings) -> tuple[object, object, bytes, bytes]:
        """(alpns, config, ALPN option, CONFIG option), packed once per settings value."""
        c = self._opt_cache
        if c is None or c[0] is not st.alpns or c[1] is not st.config:
            alpn, conf = uapi.format_alpn_option(st.alpns), uapi.pack_config(st.config)
            c = self._opt_cache = (st.alpns, st.config, alpn, conf)
        return c

    # the eventfd is readable while unread messages (or a close) are pending
    def _signal(self) -> None:
        if not self._signalled and not self.closed:
            os.eventfd_write(self._efd, 1)
            self._signalled = True

    def _unsignal(self) -> None:
        if self._signalled:
            try:
                os.eventfd_read(self._efd)
            except BlockingIOError:
                pass
            self._signalled = False


def memory_pair(
    client: MemorySettings, server: MemorySettings
) -> tuple[MemoryQuicSocket, MemoryQuicSocket]:
    c, s = MemoryQuicSocket(client, "client"), MemoryQuicSocket(server, "server")
    c.peer, s.peer = s, c
    return c, s
