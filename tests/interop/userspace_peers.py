# SPDX-License-Identifier: GPL-2.0-or-later
"""Peers and helpers for the userspace QUIC socket interop tests.

* aioquic with its *own* TLS (``aioquic.asyncio``): an echo server and an echo client;
* ngtcp2's ``gtlsserver`` / ``gtlsclient`` (GnuTLS) as subprocesses, with their logs;
* HTTP/3 over :class:`~quichsd.userspace.aioquic.UserspaceQuicSocket` with ``aioquic.h3``;
* :class:`UdpProxy`, a UDP relay on loopback with delay, loss, corruption, duplication
  and a black hole (fault catalogue 3.4).
"""

from __future__ import annotations

import asyncio
import random
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aioquic.asyncio import serve
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import QuicServer
from aioquic.h3.connection import H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic import events as ev
from aioquic.quic.configuration import QuicConfiguration
from aioquic.tls import SessionTicket

from quichsd.userspace.aioquic import UserspaceQuicSocket

GTLSSERVER = "/usr/sbin/gtlsserver"
GTLSCLIENT = "/usr/bin/gtlsclient"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- a bad path -------------------------------------------------------------------------------
def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    n = 1 << (buf[pos] >> 6)
    return int.from_bytes(buf[pos : pos + n], "big") & ((1 << (8 * n - 2)) - 1), pos + n


def quic_packet_types(datagram: bytes) -> list[str]:
    """The QUIC v1 packets coalesced in one datagram, by type (RFC 9000 §17.2): Initial,
    0-RTT, Handshake, Retry, then 1-RTT for a short-header packet (which ends it); bytes
    without the fixed bit after a packet are padding. The type bits are not
    header-protected, so this works on the encrypted wire bytes."""
    out, pos = [], 0
    while pos < len(datagram):
        first = datagram[pos]
        if not first & 0x40:
            break  # padding zeros after the last packet
        if not first & 0x80:
            out.append("1-RTT")
            break
        ptype = ("Initial", "0-RTT", "Handshake", "Retry")[(first >> 4) & 3]
        out.append(ptype)
        if ptype == "Retry":
            break
        pos += 5  # first byte, version
        pos += 1 + datagram[pos]  # destination connection id
        pos += 1 + datagram[pos]  # source connection id
        if ptype == "Initial":
            token_len, pos = _varint(datagram, pos)
            pos += token_len
        length, pos = _varint(datagram, pos)
        pos += length
    return out


class UdpProxy:
    """Relays one client's UDP datagrams to ``target`` and back through a bad path (fault
    catalogue 3.4): each datagram is delayed by ``delay`` s in each direction, dropped with
    probability ``loss``, has one bit flipped with probability ``corrupt`` and is sent twice
    with probability ``dup`` (seeded, so a run is repeatable). With ``blackhole_after`` = N,
    every client datagram after the first N is dropped (the client "vanishes"). With
    ``max_burst`` = N, at most N datagrams in a row in one direction are dropped or
    corrupted: a path that is bad but not dead, so every peer's retransmission timer wins
    eventually and a test does not depend on a lucky draw. Counts what it did in
    :attr:`stats`, and the QUIC packet types the client sent in :attr:`up_types`."""

    def __init__(
        self,
        target: tuple[str, int],
        *,
        delay: float = 0.0,
        loss: float = 0.0,
        corrupt: float = 0.0,
        dup: float = 0.0,
        blackhole_after: int | None = None,
        max_burst: int | None = None,
        seed: int = 1,
    ) -> None:
        self.target = target
        self.delay = delay
        self.loss, self.corrupt, self.dup = loss, corrupt, dup
        self.blackhole_after = blackhole_after
        self.max_burst = max_burst
        self._burst = {True: 0, False: 0}  # impaired datagrams in a row, per direction
        self.rng = random.Random(seed)
        self.stats = dict.fromkeys(("up", "down", "dropped", "corrupted", "duplicated"), 0)
        self.up_types: list[str] = []
        self._client: tuple[str, int] | None = None
        self._front: asyncio.DatagramTransport | None = None
        self._back: asyncio.DatagramTransport | None = None

    def _pass(self, data: bytes, send: Callable[[bytes], None], upstream: bool) -> None:
        self.stats["up" if upstream else "down"] += 1
        if upstream:
            try:
                self.up_types += quic_packet_types(data)
            except IndexError:  # not QUIC after all (or cut short): keep relaying
                self.up_types.append("?")
        if upstream and self.blackhole_after is not None:
            if self.stats["up"] > self.blackhole_after:
                self.stats["dropped"] += 1
                return
        spare = self.max_burst is None or self._burst[upstream] < self.max_burst
        if spare and self.rng.random() < self.loss:
            self.stats["dropped"] += 1
            self._burst[upstream] += 1
            return
        if spare and data and self.rng.random() < self.corrupt:
            self.stats["corrupted"] += 1
            self._burst[upstream] += 1
            i = self.rng.randrange(len(data))
            data = data[:i] + bytes([data[i] ^ (1 << self.rng.randrange(8))]) + data[i + 1 :]
        else:
            self._burst[upstream] = 0
        copies = 1
        if self.rng.random() < self.dup:
            self.stats["duplicated"] += 1
            copies = 2
        loop = asyncio.get_running_loop()
        for _ in range(copies):
            if self.delay:
                loop.call_later(self.delay, send, data)
            else:
                send(data)

    async def start(self) -> int:
        """Bind 127.0.0.1 and return the port the client should use."""
        loop = asyncio.get_running_loop()
        proxy = self

        def to_server(data: bytes) -> None:
            assert proxy._back is not None
            if not proxy._back.is_closing():
                proxy._back.sendto(data)

        def to_client(data: bytes) -> None:
            assert proxy._front is not None
            if not proxy._front.is_closing():
                proxy._front.sendto(data, proxy._client)

        class Front(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                proxy._client = addr
                proxy._pass(data, to_server, upstream=True)

        class Back(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                proxy._pass(data, to_client, upstream=False)

        self._front, _ = await loop.create_datagram_endpoint(Front, local_addr=("127.0.0.1", 0))
        self._back, _ = await loop.create_datagram_endpoint(Back, remote_addr=self.target)
        return int(self._front.get_extra_info("sockname")[1])

    def close(self) -> None:
        for t in (self._front, self._back):
            if t is not None:
                t.close()


# -- aioquic with its own TLS -------------------------------------------------------------
@dataclass
class EchoLog:
    """What the native aioquic endpoint saw."""

    completed: list[ev.HandshakeCompleted] = field(default_factory=list)
    terminated: list[ev.ConnectionTerminated] = field(default_factory=list)
    data: bytearray = field(default_factory=bytearray)


class _EchoProtocol(QuicConnectionProtocol):
    log: EchoLog

    def quic_event_received(self, event: ev.QuicEvent) -> None:
        if isinstance(event, ev.HandshakeCompleted):
            self.log.completed.append(event)
        elif isinstance(event, ev.ConnectionTerminated):
            self.log.terminated.append(event)
        elif isinstance(event, ev.StreamDataReceived):
            self.log.data += event.data
            self._quic.send_stream_data(
                event.stream_id, b"echo:" + event.data, end_stream=event.end_stream
            )
            self.transmit()


async def aioquic_echo_server(
    port: int,
    cert: Path,
    key: Path,
    *,
    alpn: str = "echo",
    cafile: Path | None = None,
    quantum_readiness: bool = False,
) -> tuple[QuicServer, EchoLog]:
    """aioquic's own TLS, session tickets on (0-RTT), optional client-cert verification.
    ``quantum_readiness``: aioquic adds a 1200-byte transport parameter (0x0c37)."""
    log = EchoLog()
    tickets: dict[bytes, SessionTicket] = {}
    cfg = QuicConfiguration(
        is_client=False, alpn_protocols=[alpn], quantum_readiness_test=quantum_readiness
    )
    cfg.load_cert_chain(cert, key)
    if cafile is not None:
        import ssl

        cfg.load_verify_locations(cafile=str(cafile))
        cfg.verify_mode = ssl.CERT_REQUIRED

    class Proto(_EchoProtocol):
        pass

    Proto.log = log
    server = await serve(
        "127.0.0.1",
        port,
        configuration=cfg,
        create_protocol=Proto,
        session_ticket_fetcher=tickets.pop,
        session_ticket_handler=lambda t: tickets.__setitem__(t.ticket, t),
    )
    return server, log


async def aioquic_aborting_server(
    port: int,
    cert: Path,
    key: Path,
    error_code: int,
    reason: str,
    *,
    alpn: str = "h3",
    first_flight: bool = True,
) -> tuple[QuicServer, EchoLog]:
    """aioquic's own TLS, closing each connection right after its first flight (ServerHello
    and the rest), or with ``first_flight=False`` instead of it: a CONNECTION_CLOSE with
    ``error_code`` (0x100 + alert for a TLS alert) and ``reason`` as the reason phrase,
    which a transport close carries as it is."""
    from aioquic.quic.packet import QuicFrameType

    log = EchoLog()
    cfg = QuicConfiguration(is_client=False, alpn_protocols=[alpn])
    cfg.load_cert_chain(cert, key)

    class Proto(_EchoProtocol):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            if first_flight:
                super().datagram_received(data, addr)
            else:  # only the close goes out (aioquic sends nothing else once closing)
                self._quic.receive_datagram(data, addr, now=self._loop.time())
            self._quic.close(  # once: a second call does nothing
                error_code=error_code, frame_type=QuicFrameType.CRYPTO, reason_phrase=reason
            )
            self.transmit()

    Proto.log = log
    server = await serve("127.0.0.1", port, configuration=cfg, create_protocol=Proto)
    return server, log


def aioquic_client_config(
    cafile: Path, *, alpn: str = "echo", cert: Path | None = None, key: Path | None = None
) -> QuicConfiguration:
    cfg = QuicConfiguration(is_client=True, alpn_protocols=[alpn], server_name="localhost")
    cfg.load_verify_locations(cafile=str(cafile))
    if cert is not None:
        cfg.load_cert_chain(cert, key)
    return cfg


# -- ngtcp2 -----------------------------------------------------------------------------------
class GtlsServer:
    """``gtlsserver`` serving ``htdocs`` (HTTP/3, ALPN h3) on a free port."""

    def __init__(self, workdir: Path, cert: Path, key: Path, *extra: str) -> None:
        self.port = free_port()
        self.log = workdir / f"gtlsserver-{self.port}.log"
        self.proc = subprocess.Popen(
            [GTLSSERVER, "127.0.0.1", str(self.port), str(key), str(cert)]
            + ["-d", str(workdir / "htdocs"), "--no-quic-dump", *extra],
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
        )
        time.sleep(0.3)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


async def gtlsclient(port: int, workdir: Path, *extra: str, timeout: float = 15.0) -> str:
    """Run ``gtlsclient`` GET / against 127.0.0.1:port; returns its log (it exits 0 even
    on failure, so callers parse the log)."""
    proc = await asyncio.create_subprocess_exec(
        GTLSCLIENT,
        "127.0.0.1",
        str(port),
        f"https://localhost:{port}/",
        "--exit-on-all-streams-close",
        "--no-quic-dump",
        "--handshake-timeout=10s",
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=workdir,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
    return out.decode(errors="replace")


# -- HTTP/3 over the userspace socket ---------------------------------------------------------
async def h3_get(
    sock: UserspaceQuicSocket, authority: str, path: str, h3: H3Connection | None = None
) -> tuple[int, bytes]:
    """Client: one GET on an established socket; returns (status, body). Pass the same
    ``h3`` for further requests on the connection (one H3 control stream per connection)."""
    h3 = h3 or H3Connection(sock.quic)
    sid = sock.quic.get_next_available_stream_id()
    h3.send_headers(
        sid,
        [
            (b":method", b"GET"),
            (b":scheme", b"https"),
            (b":authority", authority.encode()),
            (b":path", path.encode()),
        ],
        end_stream=True,
    )
    sock.transmit()
    status, body = 0, bytearray()
    while True:
        event = await sock.next_event(10)
        for h in h3.handle_event(event):
            if isinstance(h, HeadersReceived) and h.stream_id == sid:
                status = int(dict(h.headers)[b":status"])
                if h.stream_ended:
                    return status, bytes(body)
            elif isinstance(h, DataReceived) and h.stream_id == sid:
                body += h.data
                if h.stream_ended:
                    return status, bytes(body)
        sock.transmit()


async def h3_serve_one(sock: UserspaceQuicSocket, body: bytes) -> list[tuple[bytes, bytes]]:
    """Server: answer one request with 200 + ``body``; returns the request headers."""
    h3 = H3Connection(sock.quic)
    while True:
        event = await sock.next_event(10)
        for h in h3.handle_event(event):
            if isinstance(h, HeadersReceived):
                headers: list[tuple[bytes, bytes]] = list(h.headers)
                h3.send_headers(
                    h.stream_id,
                    [(b":status", b"200"), (b"content-length", str(len(body)).encode())],
                )
                h3.send_data(h.stream_id, body, end_stream=True)
                sock.transmit()
                return headers
        sock.transmit()


def drain_events(sock: UserspaceQuicSocket) -> list[Any]:
    out = []
    while sock._events:
        out.append(sock._events.popleft())
    return out
