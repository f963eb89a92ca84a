# SPDX-License-Identifier: GPL-2.0-or-later
"""A UDP listener that hands out one :class:`UserspaceQuicSocket` per new QUIC connection.

Like a kernel listening QUIC socket: a connection is accepted when its first Initial packet
arrives, and its ClientHello is then readable with recvmsg. Datagrams are routed by
destination connection ID (the client's original DCID and every CID we issue).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from typing import cast

from aioquic._buffer import Buffer
from aioquic.quic import events as aq_events
from aioquic.quic.configuration import SMALLEST_MAX_DATAGRAM_SIZE
from aioquic.quic.connection import NetworkAddress
from aioquic.quic.packet import (
    QuicPacketType,
    QuicProtocolVersion,
    encode_quic_version_negotiation,
    pull_quic_header,
)

from .. import uapi
from . import ccm
from .aioquic import UserspaceQuicSocket
from .bridge import BridgedConnection
from .options import SocketOptions, TransportSettings, server_configuration

__all__ = ["UserspaceQuicServer"]

CID_LENGTH = 8


class UserspaceQuicServer(asyncio.DatagramProtocol):
    """Listening socket; :meth:`accept` returns server-side sockets in ESTABLISHING."""

    def __init__(self, opts: SocketOptions, transport: TransportSettings, backlog: int) -> None:
        self._opts = opts
        self._settings = transport
        self._backlog = backlog
        self._loop = asyncio.get_running_loop()
        self._udp: asyncio.DatagramTransport | None = None
        self._routes: dict[bytes, UserspaceQuicSocket] = {}
        self._cids: dict[UserspaceQuicSocket, set[bytes]] = {}
        self._pending: list[UserspaceQuicSocket] = []  # created, no CRYPTO data yet
        self._accept: deque[UserspaceQuicSocket] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._lost: asyncio.Future[None] = self._loop.create_future()

    @classmethod
    async def listen(
        cls,
        host: str,
        port: int,
        *,
        alpns: Iterable[bytes | str],
        ticket_key: bytes | None = None,
        certificate_request: int = 0,
        cipher: uapi.Cipher | int = 0,
        transport: TransportSettings | None = None,
        backlog: int = 16,
    ) -> UserspaceQuicServer:
        """Bind UDP ``host:port`` (port 0 picks one: see :attr:`address`).

        ``ticket_key`` is the 64-byte ticket master key every accepted socket reports with
        getsockopt(SESSION_TICKET); without one a random key is made per listener.
        """
        ccm.register()
        opts = SocketOptions.make(
            alpns,
            is_client=False,
            ticket=ticket_key or b"",
            cipher=int(cipher),
            certificate_request=certificate_request,
        )
        server = cls(opts, transport or TransportSettings(), backlog)
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: server, local_addr=(host, port))
        return server

    @property
    def address(self) -> tuple[str, int]:
        assert self._udp is not None
        host, port = self._udp.get_extra_info("sockname")[:2]
        return host, port

    # -- asyncio.DatagramProtocol ----
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._udp = cast(asyncio.DatagramTransport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._lost.done():
            self._lost.set_result(None)

    def error_received(self, exc: Exception) -> None:
        pass

    def datagram_received(self, data: bytes, addr: NetworkAddress) -> None:
        if self._closed or self._udp is None:
            return
        buf = Buffer(data=data)
        try:
            header = pull_quic_header(buf, host_cid_length=CID_LENGTH)
        except ValueError:
            return
        if (
            header.packet_type != QuicPacketType.VERSION_NEGOTIATION
            and header.version is not None
            and header.version != QuicProtocolVersion.VERSION_1
        ):
            self._udp.sendto(
                encode_quic_version_negotiation(
                    source_cid=header.destination_cid,
                    destination_cid=header.source_cid,
                    supported_versions=[QuicProtocolVersion.VERSION_1],
                ),
                addr,
            )
            return
        sock = self._routes.get(header.destination_cid)
        if sock is None:
            if (
                header.packet_type != QuicPacketType.INITIAL
                or len(data) < SMALLEST_MAX_DATAGRAM_SIZE
            ):
                return
            self._promote()  # pending connections that ended (idle timeout) free their slot
            if len(self._accept) + len(self._pending) >= self._backlog:
                return
            sock = self._new_socket(header.destination_cid, addr)
            sock.datagram_received(data, addr)
            if not sock.packets_accepted:
                # nothing decrypted with this DCID's Initial keys: garbage or a corrupted
                # datagram, not a client; keeping it pending would fill the backlog for good
                sock.discard()
                return
        else:
            sock.datagram_received(data, addr)
        self._promote()

    # -- connections ----
    def _new_socket(self, odcid: bytes, addr: NetworkAddress) -> UserspaceQuicSocket:
        holder: list[UserspaceQuicSocket] = []
        conn = BridgedConnection(
            configuration=server_configuration(self._opts, self._settings),
            original_destination_connection_id=odcid,
            on_crypto=lambda level, data: holder[0].crypto_received(level, data),
        )
        udp = self._udp
        assert udp is not None

        def release() -> None:
            self._forget(sock)

        sock = UserspaceQuicSocket(
            conn, self._opts.copy(), addr, lambda d, a: udp.sendto(d, a), release
        )
        holder.append(sock)
        sock.on_cid_event = lambda ev: self._cid_event(sock, ev)
        self._cids[sock] = set()
        self._route(sock, odcid)
        self._route(sock, conn.host_cid)
        self._pending.append(sock)
        return sock

    def _route(self, sock: UserspaceQuicSocket, cid: bytes) -> None:
        self._routes[cid] = sock
        self._cids[sock].add(cid)

    def _cid_event(self, sock: UserspaceQuicSocket, ev: aq_events.QuicEvent) -> None:
        if sock not in self._cids:
            return
        if isinstance(ev, aq_events.ConnectionIdIssued):
            self._route(sock, ev.connection_id)
        elif isinstance(ev, aq_events.ConnectionIdRetired):
            self._routes.pop(ev.connection_id, None)
            self._cids[sock].discard(ev.connection_id)

    def _forget(self, sock: UserspaceQuicSocket) -> None:
        for cid in self._cids.pop(sock, set()):
            if self._routes.get(cid) is sock:
                del self._routes[cid]
        if sock in self._pending:
            self._pending.remove(sock)

    def _promote(self) -> None:
        """A pending connection whose ClientHello is readable becomes acceptable."""
        for sock in list(self._pending):
            if sock._rx or sock._eof:
                self._pending.remove(sock)
                if sock._eof:
                    sock.close()
                    continue
                self._accept.append(sock)
        if self._accept and self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def accept(self, timeout: float | None = None) -> UserspaceQuicSocket:
        async with asyncio.timeout(timeout):
            while not self._accept:
                if self._closed:
                    raise ConnectionError("listener is closed")
                self._waiter = self._loop.create_future()
                await self._waiter
                self._waiter = None
        return self._accept.popleft()

    def close(self) -> None:
        """Stop listening; connections not yet accepted are closed, accepted ones too."""
        if self._closed:
            return
        self._closed = True
        for sock in list(self._cids):
            sock.close()
        self._accept.clear()
        if self._udp is not None:
            self._udp.close()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def wait_closed(self) -> None:
        await asyncio.shield(self._lost)
