# SPDX-License-Identifier: GPL-2.0-or-later
"""A userspace QUIC socket backed by aioquic: real QUIC over real UDP, kernel socket contract.

:class:`UserspaceQuicSocket` answers the calls of :class:`~quichsd.quicsocket.QuicSocket`
the way the lxin/quic kernel module does (docs/kernel-interfaces.md §2): it decodes the packed
``quic_crypto_secret``, ``quic_config`` and ``quic_connection_close`` and the 1-byte
``QUIC_HANDSHAKE_INFO`` cmsg with :mod:`quichsd.uapi`, so a handshake driver cannot tell it
from an ``IPPROTO_QUIC`` socket. aioquic does the QUIC transport; TLS is done by whoever
holds the socket (see :mod:`.bridge`). Create clients with :meth:`UserspaceQuicSocket.connect`
and servers with :meth:`quichsd.userspace.server.UserspaceQuicServer.listen`.

Where this deliberately differs from the kernel at lxin/quic 03a9c7c: closing a socket whose
handshake failed sends a *transport* CONNECTION_CLOSE (0x1c) carrying the error code set
with ``QUIC_SOCKOPT_CONNECTION_CLOSE`` (e.g. 0x178), not APPLICATION_ERROR (issue 4).

After the handshake the socket carries application data through aioquic itself:
:attr:`quic` is the ``QuicConnection`` (use ``aioquic.h3`` on it), :meth:`next_event`
yields its events, :meth:`transmit` flushes; :meth:`send_stream` / :meth:`recv_stream`
cover simple request/response exchanges.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from aioquic.quic import events as aq_events
from aioquic.quic.connection import NetworkAddress

from .. import uapi
from ..quicsocket import Ancillary
from . import ccm
from .appdata import AppData, Readiness
from .bridge import BridgedConnection
from .options import SocketOptions, TransportSettings, client_configuration
from .sockopts import SockOpts, oserror

__all__ = ["UserspaceQuicSocket", "TransportSettings"]

#: flags sendmsg accepts (docs/kernel-interfaces.md §2.12); anything else is EINVAL
_SEND_FLAGS = (
    socket.MSG_MORE | socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL | socket.MSG_WAITALL | 0x40000
)
_CMSG_MIN = socket.CMSG_LEN(1)
#: datagrams kept while establishing, re-fed when a receive key arrives (the kernel buffers
#: packets it cannot decrypt yet; aioquic drops them)
_REPLAY_DATAGRAMS = 64
APPLICATION_ERROR = 0x0C

Sender = Callable[[bytes, NetworkAddress], None]


_err = oserror


class UserspaceQuicSocket(SockOpts, AppData):
    """One QUIC connection (client, or accepted by a server) with the kernel socket ops."""

    def __init__(
        self,
        conn: BridgedConnection,
        opts: SocketOptions,
        peer: NetworkAddress,
        send: Sender,
        release: Callable[[], None],
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._conn = conn
        self._opts = opts
        self._peer = peer
        self._send = send
        self._release = release
        self._ready = Readiness()
        self._rx: deque[tuple[uapi.CryptoLevel, bytes]] = deque()
        self._nst = bytearray()
        self._secrets: set[tuple[uapi.CryptoLevel, bool]] = set()
        self._local_close: uapi.ConnectionClose | None = None
        self._replay: deque[tuple[bytes, NetworkAddress]] = deque(maxlen=_REPLAY_DATAGRAMS)
        self._timer: asyncio.TimerHandle | None = None
        self._events: deque[aq_events.QuicEvent] = deque()
        self._event_waiter: asyncio.Future[None] | None = None
        self._eof = False
        self._closed = False
        self._established = False
        self._send_ready = asyncio.Event()
        self._net_error: OSError | None = None
        self.peer_transport_params: bytes | None = None
        self.selected_alpn: bytes | None = None
        #: called with ConnectionIdIssued/Retired events (the server routes by CID)
        self.on_cid_event: Callable[[aq_events.QuicEvent], None] | None = None

    # -- construction ----
    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        *,
        alpns: Iterable[bytes | str],
        server_name: str | None = None,
        session_ticket: bytes | None = None,
        peer_transport_params: bytes | None = None,
        cipher: uapi.Cipher | int = 0,
        receive_session_ticket: int = 0,
        transport: TransportSettings | None = None,
    ) -> UserspaceQuicSocket:
        """A client socket, ESTABLISHING: UDP connected, nothing sent until a ClientHello.

        ``session_ticket`` is the session data stored from an earlier connection (returned by
        getsockopt(SESSION_TICKET) while establishing); ``peer_transport_params`` the server's
        transport parameters from that connection (:attr:`peer_transport_params`), which
        0-RTT needs for its flow-control limits (the kernel's TRANSPORT_PARAM ``remote=1``).
        """
        ccm.register()
        opts = SocketOptions.make(
            alpns,
            is_client=True,
            ticket=session_ticket or b"",
            cipher=int(cipher),
            receive_session_ticket=receive_session_ticket,
        )
        loop = asyncio.get_running_loop()
        proto = _ClientProtocol()
        udp, _ = await loop.create_datagram_endpoint(lambda: proto, remote_addr=(host, port))
        peer: NetworkAddress = udp.get_extra_info("peername")
        holder: list[UserspaceQuicSocket] = []
        conn = BridgedConnection(
            configuration=client_configuration(opts, server_name, transport or TransportSettings()),
            on_crypto=lambda level, data: holder[0].crypto_received(level, data),
        )
        sock = cls(conn, opts, peer, lambda data, _addr: udp.sendto(data), udp.close)
        holder.append(sock)
        proto.sock = sock
        sock._closed_future = proto.closed
        conn.connect(peer, now=loop.time())
        if peer_transport_params:
            conn.remember_peer_transport_parameters(peer_transport_params)
        return sock

    _closed_future: asyncio.Future[None] | None = None

    # -- inputs from the network ----
    def datagram_received(self, data: bytes, addr: NetworkAddress) -> None:
        if self._closed:
            return
        if not self._established:
            self._replay.append((data, addr))
        self._conn.receive_datagram(data, addr, now=self._loop.time())
        self._after_io()

    def crypto_received(self, level: uapi.CryptoLevel, data: bytes) -> None:
        """Reassembled CRYPTO data from aioquic (in order, per level)."""
        if level is uapi.CryptoLevel.APP:
            # docs/kernel-interfaces.md §2.9: post-handshake CRYPTO is not for recvmsg; the first
            # NewSessionTicket is assembled for getsockopt(SESSION_TICKET); servers drop it
            if self._conn._is_client and not self._nst_complete():
                self._nst += data
            return
        self._rx.append((level, data))

    def _nst_complete(self) -> bool:
        n = len(self._nst)
        return n >= 4 and n >= 4 + int.from_bytes(self._nst[1:4], "big")

    def _on_timer(self) -> None:
        self._timer = None
        if self._closed:
            return
        self._conn.handle_timer(now=self._loop.time())
        self._after_io()

    def _after_io(self) -> None:
        while (ev := self._conn.next_event()) is not None:
            if isinstance(ev, aq_events.ConnectionIdIssued | aq_events.ConnectionIdRetired):
                if self.on_cid_event is not None:
                    self.on_cid_event(ev)
                continue
            if isinstance(ev, aq_events.ConnectionTerminated):
                self._eof = True
            self._events.append(ev)
        if self._conn._close_event is not None:
            # the peer closed, or aioquic closes on a protocol error: the connection is
            # over for recvmsg at once (the kernel does not wait for the draining period)
            self._eof = True
        if self._eof:
            self._send_ready.set()
        if self._events and self._event_waiter is not None and not self._event_waiter.done():
            self._event_waiter.set_result(None)
        self.transmit()
        self._ready.update(bool(self._rx) or self._eof)

    def transmit(self) -> None:
        """Send what aioquic has to send and re-arm its timer."""
        if self._closed:
            return
        now = self._loop.time()
        for data, addr in self._conn.datagrams_to_send(now=now):
            self._send(data, addr)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        at = self._conn.get_timer()
        if at is not None:
            self._timer = self._loop.call_at(at, self._on_timer)

    # -- QuicSocket: plumbing ----
    def fileno(self) -> int:
        if self._closed:
            return -1
        return self._ready.fileno()

    def setblocking(self, flag: bool, /) -> None:
        """Accepted for compatibility; the socket never blocks."""

    def getpeername(self) -> Any:
        return self._peer

    # -- QuicSocket: handshake messages ----
    def sendmsg(
        self,
        buffers: Iterable[bytes],
        ancdata: Iterable[tuple[int, int, bytes]] = (),
        flags: int = 0,
        address: Any = None,
        /,
    ) -> int:
        if self._closed or self._eof:
            raise _err(errno.EPIPE, "connection is closed")
        if flags & ~_SEND_FLAGS:
            raise _err(errno.EINVAL, f"sendmsg flags 0x{flags & ~_SEND_FLAGS:x} not allowed")
        level: uapi.CryptoLevel | None = None
        for clevel, ctype, cdata in ancdata:
            if clevel == uapi.SOL_QUIC and ctype == uapi.QUIC_HANDSHAKE_INFO:
                if len(cdata) < 1 or cdata[0] > uapi.CryptoLevel.EARLY:
                    raise _err(errno.EINVAL, f"QUIC_HANDSHAKE_INFO payload {cdata!r} invalid")
                level = uapi.CryptoLevel(cdata[0])
        if level is None:  # stream data: only through the post-handshake API here
            raise _err(errno.EINVAL, "no QUIC_HANDSHAKE_INFO cmsg (stream data not supported)")
        data = b"".join(bytes(b) for b in buffers)
        if not data:
            raise _err(errno.EMSGSIZE, "empty handshake message")
        if level is uapi.CryptoLevel.EARLY:
            raise _err(errno.EINVAL, "handshake data cannot be sent at the EARLY level")
        if not self._conn.can_send(level):
            raise _err(errno.EINVAL, f"no {level.name} transmit key installed")
        self._conn.queue_crypto(level, data)
        if not flags & socket.MSG_MORE:
            self.transmit()
        return len(data)

    def recvmsg(
        self, bufsize: int, ancbufsize: int = 0, flags: int = 0, /
    ) -> tuple[bytes, Ancillary, int, Any]:
        if self._closed:
            raise _err(errno.EBADF, "socket is closed")
        if self._net_error is not None and not self._rx:
            raise self._net_error
        if not self._rx:
            if self._eof:
                return b"", [], 0, self._peer
            raise BlockingIOError(errno.EAGAIN, "no handshake data")
        level, chunk = self._rx[0]
        data, rest = chunk[:bufsize], chunk[bufsize:]
        if rest:
            self._rx[0] = (level, rest)
        else:
            self._rx.popleft()
        self._ready.update(bool(self._rx) or self._eof)
        msg_flags = socket.MSG_EOR if not rest else 0
        if ancbufsize < _CMSG_MIN:
            return data, [], msg_flags | socket.MSG_CTRUNC, self._peer
        anc = [(uapi.SOL_QUIC, uapi.QUIC_HANDSHAKE_INFO, uapi.pack_handshake_info(level))]
        return data, anc, msg_flags, self._peer

    # -- state and closing ----
    @property
    def established(self) -> bool:
        return self._established

    @property
    def quic(self) -> BridgedConnection:
        return self._conn

    @property
    def session_data(self) -> bytes | None:
        """Client: the session data the agent stored (setsockopt SESSION_TICKET), if any."""
        return self._opts.ticket if self._opts.is_client and self._opts.ticket else None

    @property
    def can_send_early_data(self) -> bool:
        return self._conn.can_send(uapi.CryptoLevel.EARLY) or self._established

    def peer_close_info(self) -> uapi.ConnectionClose | None:
        ev = self._conn._peer_close
        if ev is None:
            return None
        return uapi.ConnectionClose(
            ev.error_code, ev.frame_type or 0, ev.reason_phrase.encode()[:63]
        )

    def close_info(self) -> uapi.ConnectionClose:
        return self.peer_close_info() or self._local_close or uapi.ConnectionClose(0)

    def close(self) -> None:
        """Send CONNECTION_CLOSE (see the module doc) and release the UDP socket and fds."""
        if self._closed:
            return
        if not self._eof:
            info = self._local_close
            if self._established:
                code = info.errcode if info else 0
                self._conn.close(code, None, info.phrase.decode(errors="replace") if info else "")
            else:
                code = info.errcode if info else APPLICATION_ERROR
                frame = info.frame if info else 0
                phrase = info.phrase.decode(errors="replace") if info else ""
                self._conn.close(code, frame, phrase)
            self.transmit()
        self._closed = True
        self._eof = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._ready.close()
        self._send_ready.set()
        self._release()
        if self._event_waiter is not None and not self._event_waiter.done():
            self._event_waiter.set_result(None)

    def discard(self) -> None:
        """Release everything without sending anything: for a first datagram that was not
        a connection after all (nothing in it decrypted)."""
        self._eof = True
        self.close()

    def network_error(self, exc: OSError) -> None:
        """An ICMP error for the connected UDP socket. Before anything from the peer
        decrypted, "port unreachable" means no QUIC server is there: the handshake ends at
        once (recvmsg raises ECONNREFUSED), as a connected kernel socket's pending error
        would, instead of at its deadline. Later ones are left to QUIC's loss recovery."""
        if self._closed or self._established or self._conn.packets_accepted:
            return
        if isinstance(exc, ConnectionRefusedError):
            host, port = self._peer[0], self._peer[1]
            self._net_error = _err(
                errno.ECONNREFUSED, f"{host} port {port} unreachable (ICMP): no server there"
            )
            self._eof = True
            self._send_ready.set()
            self._ready.update(True)

    @property
    def zero_rtt_received(self) -> int:
        """Server: how many 0-RTT packets from the client decrypted."""
        return self._conn.zero_rtt_received

    def resend_rejected_early_data(self) -> int:
        """Client, the server rejected 0-RTT: send what went in 0-RTT packets again in
        1-RTT now (not after loss detection); returns the number of packets requeued."""
        if self._closed:
            return 0
        n = self._conn.resend_zero_rtt(self._loop.time())
        self.transmit()
        return n

    @property
    def packets_accepted(self) -> bool:
        """Whether any packet from the peer decrypted."""
        return self._conn.packets_accepted

    async def wait_closed(self) -> None:
        """Client: until the UDP transport is gone (its fd closed)."""
        if self._closed_future is not None:
            await asyncio.shield(self._closed_future)


class _ClientProtocol(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.sock: UserspaceQuicSocket | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: NetworkAddress) -> None:
        if self.sock is not None:
            self.sock.datagram_received(data, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors: QUIC's loss recovery and idle timeout handle them, except a port
        # unreachable before the peer ever answered (see network_error)
        if self.sock is not None and isinstance(exc, OSError):
            self.sock.network_error(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
