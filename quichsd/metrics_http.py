"""The metrics endpoint: ``GET /metrics`` over HTTP/1.x on ``metrics.listen``, on the
daemon's event loop.

One request per connection, answered and closed (``Connection: close``). Every input is
bounded: the request line and headers together at most :data:`MAX_HEAD` bytes, read within
:data:`READ_TIMEOUT`; at most :data:`MAX_CONNECTIONS` connections at once (more get 503).
A request body is never read. Answers: 200 with the exposition text for ``GET`` (and
``HEAD``) ``/metrics``; 404 for another path; 405 for another method; 400 for a request
that is not HTTP/1.x; 431 for a head over the limit; a connection silent for the timeout
is closed without an answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections.abc import Callable

from .config import ListenAddress, MetricsSettings
from .metrics import CONTENT_TYPE, REGISTRY

log = logging.getLogger("quichsd.metrics")

MAX_HEAD = 8192
READ_TIMEOUT = 5.0
WRITE_TIMEOUT = 5.0
MAX_CONNECTIONS = 16
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


class MetricsServer:
    def __init__(
        self,
        listen: ListenAddress,
        render: Callable[[], bytes] = REGISTRY.render,
        content_type: str = CONTENT_TYPE,
    ) -> None:
        self.listen = listen
        self._render = render
        self._content_type = content_type
        self._server: asyncio.Server | None = None
        self._conns: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    async def start(self) -> None:
        """Listen; raises OSError (e.g. EADDRINUSE, or EAFNOSUPPORT under systemd's
        RestrictAddressFamilies) naming the address."""
        try:
            self._server = await asyncio.start_server(
                self._connection, self.listen.host, self.listen.port, limit=MAX_HEAD
            )
        except OSError as e:
            why = os.strerror(e.errno) if e.errno else str(e)
            raise OSError(e.errno, f"cannot listen on {self.listen}: {why}") from e

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in self._conns.values():  # ends their reads: EOF, no answer
            writer.transport.abort()
        if self._conns:
            await asyncio.wait(set(self._conns))

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns[task] = writer
        try:
            if await self._serve(reader, writer):
                await _linger(reader, writer)
        except (OSError, TimeoutError) as e:
            log.debug("metrics: connection from %s: %s", writer.get_extra_info("peername"), e)
        finally:
            del self._conns[task]
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), WRITE_TIMEOUT)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer the request; False if there was none to answer."""
        text = "text/plain; charset=utf-8"
        if len(self._conns) > MAX_CONNECTIONS:
            writer.write(response(503, b"too many connections\n", text))
        else:
            try:
                async with asyncio.timeout(READ_TIMEOUT):
                    head = await read_head(reader)
            except BadRequest as e:
                writer.write(response(e.status, f"{e}\n".encode(), text))
            else:
                if head is None:
                    return False
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


class MetricsEndpoint:
    """Keeps the server matching the ``metrics`` settings across SIGHUP reloads."""

    def __init__(self, render: Callable[[], bytes] = REGISTRY.render) -> None:
        self.server: MetricsServer | None = None
        self._render = render
        self._lock = asyncio.Lock()  # reloads in quick succession apply in order

    async def apply(self, settings: MetricsSettings) -> str | None:
        """Start, stop or move the server; the new state as text, ``None`` if unchanged.
        A failed bind is logged and returned; a failed move goes back to the old address."""
        want = settings.listen if settings.enabled else None
        async with self._lock:
            old = self.server
            if (old.listen if old is not None else None) == want:
                return None
            if old is not None:
                await old.stop()
                self.server = None
            if want is None:
                return "metrics disabled"
            try:
                self.server = await self._start(want)
            except OSError as e:
                log.error("metrics not served: %s", e)
                if old is not None:
                    with contextlib.suppress(OSError):
                        self.server = await self._start(old.listen)
                        return f"metrics not moved ({e}); still on http://{old.listen}/metrics"
                return f"metrics not served ({e})"
            return f"metrics on http://{want}/metrics"

    async def _start(self, listen: ListenAddress) -> MetricsServer:
        server = MetricsServer(listen, self._render)
        await server.start()
        return server

    async def stop(self) -> None:
        async with self._lock:
            if self.server is not None:
                await self.server.stop()
                self.server = None
