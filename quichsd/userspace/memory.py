"""An in-memory pair of QUIC sockets: handshake messages cross, secrets are recorded.

No QUIC packets and no UDP: each ``sendmsg`` at a level becomes a ``recvmsg`` at the same
level on the peer. It implements the kernel socket contract's byte formats (it decodes the
packed ``quic_crypto_secret``, cmsg and ``quic_connection_close`` with :mod:`quichsd.uapi`)
so the driver runs unchanged. Used by benchmarks and by driver unit tests of socket-side
behaviour; it is not a QUIC peer, and interop tests use real ones.
"""

from __future__ import annotations

import errno
import socket
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, overload

from .. import uapi
from ..quicsocket import Ancillary, find_handshake_level


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
        self.secrets: dict[tuple[uapi.CryptoLevel, bool], uapi.CryptoSecret] = {}
        self.peer_tp: bytes | None = None
        self.selected_alpn: bytes | None = None
        self.close_info: uapi.ConnectionClose | None = None
        self.stored_ticket: bytes | None = None
        self.nst: bytes = b""  # post-handshake NewSessionTicket, via getsockopt
        self.closed = False
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._w.setblocking(False)
        self._signalled = False

    # -- QuicSocket ---------------------------------------------------------------------
    def fileno(self) -> int:
        return self._r.fileno()

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
            value = uapi.format_alpn_option(st.alpns)
        elif optname == uapi.QUIC_SOCKOPT_CONFIG:
            return uapi.pack_config(st.config)[:buflen]
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
            try:
                s = uapi.unpack_crypto_secret(bytes(value))
            except ValueError as e:
                raise OSError(errno.EINVAL, str(e)) from None
            if self.established:
                raise OSError(errno.EINVAL, "already established")
            self.secrets[(s.level, s.send)] = s
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
        level = find_handshake_level(list(ancdata))
        if level is None or level is uapi.CryptoLevel.EARLY:
            raise OSError(errno.EINVAL, "handshake data needs INITIAL/HANDSHAKE/APP info")
        if not data:
            raise OSError(errno.EMSGSIZE, "empty message")
        if level is not uapi.CryptoLevel.INITIAL and (level, True) not in self.secrets:
            raise OSError(errno.EINVAL, f"no {level.name} tx key installed")
        peer = self.peer
        if peer is None or peer.closed or self.closed:
            raise OSError(errno.EPIPE, "not connected")
        if level is uapi.CryptoLevel.APP and peer.established:
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
        msg_flags = 0
        anc: Ancillary = [
            (uapi.SOL_QUIC, uapi.QUIC_HANDSHAKE_INFO, uapi.pack_handshake_info(level))
        ]
        if ancbufsize < socket.CMSG_SPACE(1):
            anc, msg_flags = [], socket.MSG_CTRUNC
        if not self.inbox:
            self._unsignal()
        return data, anc, msg_flags, None

    @property
    def established(self) -> bool:
        return (uapi.CryptoLevel.APP, True) in self.secrets and (
            uapi.CryptoLevel.APP,
            False,
        ) in self.secrets

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.peer is not None:
                self.peer._signal()
            self._r.close()
            self._w.close()

    # -- plumbing ------------------------------------------------------------------------
    def inject(self, level: uapi.CryptoLevel, data: bytes) -> None:
        """Deliver bytes as if the peer had sent them (for malformed-input tests)."""
        self._deliver(level, data)

    def _deliver(self, level: uapi.CryptoLevel, data: bytes) -> None:
        self.inbox.append((level, data))
        self._signal()

    def _signal(self) -> None:
        if not self._signalled and not self.closed:
            self._w.send(b"\0")
            self._signalled = True

    def _unsignal(self) -> None:
        if self._signalled:
            try:
                self._r.recv(16)
            except BlockingIOError:
                pass
            self._signalled = False


def memory_pair(
    client: MemorySettings, server: MemorySettings
) -> tuple[MemoryQuicSocket, MemoryQuicSocket]:
    c, s = MemoryQuicSocket(client, "client"), MemoryQuicSocket(server, "server")
    c.peer, s.peer = s, c
    return c, s
