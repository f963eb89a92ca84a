# SPDX-License-Identifier: GPL-2.0-or-later
"""The metrics endpoint: ``GET /metrics`` over HTTP/1.x on ``metrics.listen``, on the
daemon's event loop.

One request per connection, answered and closed (``Connection: close``). Every input is
bounded: the request line and headers together at most :data:`MAX_HEAD` bytes, read within
:data:`READ_TIMEOUT` of the accept. At most :data:`MAX_CONNECTIONS` connections are held
at once, and at most ``metrics.max_connections_per_address`` from one client address.
Scrapes are served first: when a new connection would exceed either limit, the oldest
connection (of that address, or of all) that has not sent a complete request, or has been
answered and only lingers, is closed to make room; only when every slot is writing an
answer does the newcomer get 503. So silent connections, from any local user, cannot keep
a scraper out. Dropped connections are counted in
``quichsd_metrics_connections_dropped_total``. The accept loop is
:func:`quichsd.accept.accept_forever` (at the fd limit it backs off and logs once per
interval). A request body is never read. Answers: 200 with the exposition text for ``GET`` (and
``HEAD``) ``/metrics``; 404 for another path; 405 for another method; 400 for a request
that is not HTTP/1.x; 431 for a head over the limit; a connection silent for the timeout
is closed without an answer.

The exposition text comes from :mod:`quichsd.metrics_export` (prometheus_client), imported
when a server first starts without a render function of its own, so that a daemon with
metrics disabled never loads prometheus_client.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .accept import accept_forever
from .config import MAX_METRICS_CONNECTIONS, ListenAddress, MetricsSettings
from .metrics import ACCEPT_ERRORS, METRICS_DROPPED

log = logging.getLogger("quichsd.metrics")

#: the exposition format :mod:`quichsd.metrics_export` writes (prometheus_client's
#: generate_latest); repeated here so that this module does not import it
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_HEAD = 8192
READ_TIMEOUT = 5.0
WRITE_TIMEOUT = 5.0
MAX_CONNECTIONS = MAX_METRICS_CONNECTIONS
BACKLOG = 64
LINGER_TIMEOUT = 1.0
LINGER_BYTES = 65536
#: method SP request-target SP HTTP-version (RFC 9112 §3): tokens, no control characters
_REQUEST_LINE = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+) ([\x21-\x7e]+) HTTP/1\.[01]")
_HEADER = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+:[^\x00\r\n]*")


class BadRequest(Exception):
    """An HTTP request we do not answer with the metrics; ``status`` says how."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


def parse_head(head: bytes) -> tuple[str, str]:
    """Method and path of a request head (lines ending in CRLF or LF, empty line
    included); raises :class:`BadRequest` naming what is wrong."""
    lines = head.split(b"\n")
    if len(lines) < 2 or lines[-1] != b"" or lines[-2].rstrip(b"\r") != b"":
        raise BadRequest(400, "request head does not end with an empty line")
    lines = [line.removesuffix(b"\r") for line in lines[:-2]]
    if not lines:
        raise BadRequest(400, "no request line")
    m = _REQUEST_LINE.fullmatch(lines[0])
    if m is None:
        raise BadRequest(400, f"malformed request line {lines[0][:80]!r}")
    for line in lines[1:]:
        if _HEADER.fullmatch(line) is None:
            raise BadRequest(400, f"malformed header line {line[:80]!r}")
    method, target = m.group(1).decode(), m.group(2).decode()
    return method, target.partition("?")[0]


def response(status: int, body: bytes, content_type: str, *, head_only: bool = False) -> bytes:
    lines = [
        f"HTTP/1.1 {status} {_REASONS[status]}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    if status == 405:
        lines.append("Allow: GET, HEAD")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode()
    return head if head_only else head + body


def answer(head: bytes, render: Callable[[], bytes], content_type: str) -> bytes:
    """The whole response to a complete request head."""
    try:
        method, path = parse_head(head)
    except BadRequest as e:
        return response(e.status, f"{e}\n".encode(), "text/plain; charset=utf-8")
    if method not in ("GET", "HEAD"):
        return response(405, b"only GET and HEAD\n", "text/plain; charset=utf-8")
    if path != "/metrics":
        return response(404, b"metrics are at /metrics\n", "text/plain; charset=utf-8")
    return response(200, render(), content_type, head_only=method == "HEAD")


async def read_head(reader: asyncio.StreamReader) -> bytes | None:
    """The request line and headers, up to the empty line; ``None`` at EOF before it.
    Raises :class:`BadRequest` (431) past :data:`MAX_HEAD` bytes."""
    head = b""
    while True:
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError:
            return None
        except asyncio.LimitOverrunError:
            raise BadRequest(431, f"request head exceeds {MAX_HEAD} bytes") from None
        head += line
        if len(head) > MAX_HEAD:
            raise BadRequest(431, f"request head exceeds {MAX_HEAD} bytes")
        if line in (b"\r\n", b"\n"):
            return head


class Phase(enum.IntEnum):
    """Where a connection is; the lower, the sooner it is closed to make room."""

    READING = 0  # no complete request yet
    LINGERING = 1  # answered; discarding what the client still sends
    WRITING = 2  # a request is being answered: never closed for another


@dataclass(eq=False)
class _Conn:
    address: str
    sock: socket.socket
    phase: Phase = Phase.READING
    transport: asyncio.WriteTransport | None = None
    dropped: bool = False

    def drop(self) -> None:
        """Close it now: a read in progress ends at EOF and gets no answer."""
        self.dropped = True
        if self.transport is not None:
            self.transport.abort()
        else:  # not wrapped in a transport yet
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)


class MetricsServer:
    def __init__(
        self,
        listen: ListenAddress,
        render: Callable[[], bytes] | None = None,
        content_type: str = CONTENT_TYPE,
        per_address: int = MetricsSettings().max_connections_per_address,
    ) -> None:
        self.listen = listen
        self.per_address = per_address
        if render is None:  # the daemon's metrics: prometheus_client is loaded now
            render = _daemon_render()
        self._render = render
        self._content_type = content_type
        self._listener: socket.socket | None = None
        self._accept: asyncio.Task[None] | None = None
        #: connections held, oldest first
        self._conns: dict[asyncio.Task[None], _Conn] = {}

    async def start(self) -> None:
        """Listen; raises OSError (e.g. EADDRINUSE, or EAFNOSUPPORT under systemd's
        RestrictAddressFamilies) naming the address."""
        family = socket.AF_INET6 if ":" in self.listen.host else socket.AF_INET
        try:
            sock = socket.create_server(
                (self.listen.host, self.listen.port), family=family, backlog=BACKLOG
            )
        except OSError as e:
            why = os.strerror(e.errno) if e.errno else str(e)
            raise OSError(e.errno, f"cannot listen on {self.listen}: {why}") from e
        sock.setblocking(False)
        self._listener = sock
        self._accept = asyncio.create_task(
            accept_forever(
                sock,
                self._accepted,
                log,
                f"metrics on {self.listen}",
                lambda: ACCEPT_ERRORS.inc("metrics"),
            )
        )

    async def stop(self) -> None:
        if self._accept is not None:
            self._accept.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accept
            self._accept = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for conn in self._conns.values():  # ends their reads: EOF, no answer
            conn.drop()
        if self._conns:
            await asyncio.wait(set(self._conns))

    def _accepted(self, sock: socket.socket, addr: Any) -> None:
        conn = _Conn(str(addr[0]), sock)
        room = self._make_room(
            [c for c in self._conns.values() if c.address == conn.address], self.per_address
        )
        room = room and self._make_room(list(self._conns.values()), MAX_CONNECTIONS)
        task = asyncio.create_task(self._connection(conn, room))
        if room:
            self._conns[task] = conn

    def _make_room(self, held: Iterable[_Conn], limit: int) -> bool:
        """Drop connections from ``held`` (oldest first, reading before lingering) until
        fewer than ``limit`` remain; False if only answering ones are left."""
        held = list(held)
        victims = sorted((c for c in held if c.phase < Phase.WRITING), key=lambda c: c.phase)
        while len(held) >= limit:
            if not victims:
                METRICS_DROPPED.inc("busy")
                return False
            victim = victims.pop(0)
            held.remove(victim)
            self._forget(victim)
            victim.drop()
            METRICS_DROPPED.inc("evicted")
        return True

    def _forget(self, conn: _Conn) -> None:
        for task, c in list(self._conns.items()):
            if c is conn:
                del self._conns[task]

    async def _connection(self, conn: _Conn, room: bool) -> None:
        try:
            reader, writer = await asyncio.open_connection(sock=conn.sock, limit=MAX_HEAD)
        except OSError:
            conn.sock.close()
            self._forget(conn)
            return
        conn.transport = writer.transport
        if conn.dropped:
            writer.transport.abort()
        try:
            if await self._serve(conn, reader, writer, room):
                conn.phase = Phase.LINGERING
                await _linger(reader, writer)
        except (OSError, TimeoutError) as e:
            log.debug("metrics: connection from %s: %s", conn.address, e)
        finally:
            self._forget(conn)
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), WRITE_TIMEOUT)

    async def _serve(
        self, conn: _Conn, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, room: bool
    ) -> bool:
        """Answer the request; False if there was none to answer."""
        text = "text/plain; charset=utf-8"
        if not room:
            writer.write(response(503, b"every connection slot is answering a scrape\n", text))
        else:
            try:
                async with asyncio.timeout(READ_TIMEOUT):
                    head = await read_head(reader)
            except BadRequest as e:
                conn.phase = Phase.WRITING
                writer.write(response(e.status, f"{e}\n".encode(), text))
            else:
                if head is None or conn.dropped:
                    return False
                conn.phase = Phase.WRITING
                writer.write(answer(head, self._render, self._content_type))
        async with asyncio.timeout(WRITE_TIMEOUT):
            await writer.drain()
        return True


async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Half-close, then discard what the client still sends (at most :data:`LINGER_BYTES`
    within :data:`LINGER_TIMEOUT`): closing with unread input would reset the connection
    and could destroy the answer before the client has read it."""
    if writer.can_write_eof():
        writer.write_eof()
    left = LINGER_BYTES
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(LINGER_TIMEOUT):
            while left > 0 and (chunk := await reader.read(min(left, 4096))):
                left -= len(chunk)


class MetricsUnavailable(Exception):
    """prometheus_client cannot be imported: the endpoint is not served."""


def _daemon_render() -> Callable[[], bytes]:
    try:
        from .metrics_export import daemon_render
    except ImportError as e:
        raise MetricsUnavailable(
            f"needs the Python package 'prometheus_client' ({e}; Debian: "
            "python3-prometheus-client, PyPI: prometheus-client)"
        ) from None
    return daemon_render()


class MetricsEndpoint:
    """Keeps the server matching the ``metrics`` settings across SIGHUP reloads."""

    def __init__(self, render: Callable[[], bytes] | None = None) -> None:
        self.server: MetricsServer | None = None
        self._render = render
        self._lock = asyncio.Lock()  # reloads in quick succession apply in order
        self._per_address = MetricsSettings().max_connections_per_address

    async def apply(self, settings: MetricsSettings) -> str | None:
        """Start, stop or move the server; the new state as text, ``None`` if unchanged.
        A failed bind is logged and returned; a failed move goes back to the old address."""
        want = settings.listen if settings.enabled else None
        self._per_address = settings.max_connections_per_address
        async with self._lock:
            old = self.server
            if (old.listen if old is not None else None) == want:
                if old is not None:
                    old.per_address = self._per_address
                return None
            if old is not None:
                await old.stop()
                self.server = None
            if want is None:
                return "metrics disabled"
            try:
                self.server = await self._start(want)
            except MetricsUnavailable as e:
                log.error("metrics not served: %s", e)
                return f"metrics not served ({e})"
            except OSError as e:
                log.error("metrics not served: %s", e)
                if old is not None:
                    with contextlib.suppress(OSError):
                        self.server = await self._start(old.listen)
                        return f"metrics not moved ({e}); still on http://{old.listen}/metrics"
                return f"metrics not served ({e})"
            return f"metrics on http://{want}/metrics"

    async def _start(self, listen: ListenAddress) -> MetricsServer:
        server = MetricsServer(listen, self._render, per_address=self._per_address)
        await server.start()
        return server

    async def stop(self) -> None:
        async with self._lock:
            if self.server is not None:
                await self.server.stop()
                self.server = None
