# SPDX-License-Identifier: GPL-2.0-or-later
"""The parts of the userspace QUIC socket that are not the kernel contract.

:class:`Readiness` gives the socket a pollable fd; :class:`AppData` is the post-handshake
API (aioquic events, streams) the probe and tests use to prove a connection carries data.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from abc import ABC, abstractmethod
from collections import deque

from aioquic.quic import events as aq_events

from .bridge import BridgedConnection


class Readiness:
    """A socketpair whose read end is readable exactly while ``set`` holds."""

    def __init__(self) -> None:
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._w.setblocking(False)
        self._on = False

    def fileno(self) -> int:
        return self._r.fileno()

    def update(self, on: bool) -> None:
        if on and not self._on:
            self._w.send(b"\x01")
        elif not on and self._on:
            try:
                while self._r.recv(64):
                    pass
            except BlockingIOError:
                pass
        self._on = on

    def close(self) -> None:
        self._r.close()
        self._w.close()


class AppData(ABC):
    """Post-handshake application data over aioquic (mixed into the socket)."""

    _loop: asyncio.AbstractEventLoop
    _conn: BridgedConnection
    _events: deque[aq_events.QuicEvent]
    _event_waiter: asyncio.Future[None] | None
    _send_ready: asyncio.Event
    _closed: bool
    _eof: bool

    @abstractmethod
    def transmit(self) -> None:
        """Provided by the concrete socket."""

    async def wait_send_ready(self) -> bool:
        """Until stream data can be sent (0-RTT or 1-RTT keys); False if the socket closed."""
        if not self._send_ready.is_set():
            await self._send_ready.wait()
        return not (self._closed or self._eof)

    async def next_event(self, timeout: float | None = None) -> aq_events.QuicEvent:
        """The next aioquic event (stream data, datagrams, termination...)."""
        async with asyncio.timeout(timeout):
            while not self._events:
                if self._closed:
                    raise ConnectionError("socket is closed")
                self._event_waiter = self._loop.create_future()
                await self._event_waiter
                self._event_waiter = None
        return self._events.popleft()

    def send_stream(self, data: bytes, *, end: bool = True, stream_id: int | None = None) -> int:
        """Send on a stream (a new bidirectional one if ``stream_id`` is None); returns its id."""
        if self._closed or self._eof:
            raise OSError(errno.EPIPE, "EPIPE: connection is closed")
        if stream_id is None:
            stream_id = self._conn.get_next_available_stream_id()
        self._conn.send_stream_data(stream_id, data, end_stream=end)
        self.transmit()
        return stream_id

    async def wait_delivered(self, stream_id: int, timeout: float) -> bool:
        """Until everything sent on ``stream_id``, FIN included, was acknowledged; False if
        not within ``timeout`` seconds or the connection closed first."""
        end = self._loop.time() + timeout
        while True:
            stream = self._conn._streams.get(stream_id)
            if stream is None or stream.sender.is_finished:
                return True  # aioquic drops a stream once both directions are done
            if self._closed or self._eof or self._loop.time() >= end:
                return False
            await asyncio.sleep(0.01)

    async def recv_stream(self, stream_id: int, timeout: float | None = None) -> bytes:
        """All data of ``stream_id`` up to its FIN; other events stay queued."""
        out = bytearray()
        kept: list[aq_events.QuicEvent] = []
        try:
            while True:
                ev = await self.next_event(timeout)
                if isinstance(ev, aq_events.StreamDataReceived) and ev.stream_id == stream_id:
                    out += ev.data
                    if ev.end_stream:
                        return bytes(out)
                elif isinstance(ev, aq_events.ConnectionTerminated):
                    kept.append(ev)
                    raise ConnectionError(
                        f"connection closed (0x{ev.error_code:x} {ev.reason_phrase}) "
                        f"before stream {stream_id} ended"
                    )
                else:
                    kept.append(ev)
        finally:
            self._events.extendleft(reversed(kept))
