# SPDX-License-Identifier: GPL-2.0-or-later
"""Accept loops that survive the fd limit: back off, and log once per interval.

asyncio's own accept loop (``loop.create_server``) reports every failed ``accept()`` to the
loop's exception handler with a full traceback; at the fd limit the listener stays
readable and that becomes thousands of lines a second. :func:`accept_forever` is used
instead by the unix service and the metrics endpoint: a failed accept waits
:data:`MIN_BACKOFF` s, doubling up to :data:`MAX_BACKOFF` s while it keeps failing, and
:class:`Throttled` writes one line per :data:`LOG_INTERVAL` s that counts the failures
in between. The first accept that works again is logged once.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import time
from collections.abc import Callable
from typing import Any, NoReturn

MIN_BACKOFF = 0.05
MAX_BACKOFF = 1.0
LOG_INTERVAL = 10.0
#: the client gave up before we accepted: nothing to back off from
_TRANSIENT = (errno.ECONNABORTED, errno.EPROTO, errno.EINTR, errno.EAGAIN)


class Throttled:
    """One log line per ``interval`` s for a condition that recurs; the line after a quiet
    stretch counts the occurrences it did not write (``N more since the last line``)."""

    def __init__(
        self,
        log: logging.Logger,
        interval: float = LOG_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log = log
        self.interval = interval
        self.clock = clock
        self.total = 0
        self._skipped = 0
        self._next = float("-inf")

    def __call__(self, level: int, msg: str, *args: Any) -> None:
        self.total += 1
        now = self.clock()
        if now < self._next:
            self._skipped += 1
            return
        if self._skipped:
            msg += f" ({self._skipped} more since the last line)"
            self._skipped = 0
        self._next = now + self.interval
        self.log.log(level, msg, *args)


async def accept_forever(
    listener: socket.socket,
    on_conn: Callable[[socket.socket, Any], None],
    log: logging.Logger,
    what: str,
    on_error: Callable[[], None] | None = None,
) -> NoReturn:
    """Accept connections on the non-blocking ``listener`` and pass each (non-blocking) to
    ``on_conn`` with its address; never raises an accept error (see the module text).
    ``on_error`` is called for each failed accept that backs off (to count it)."""
    loop = asyncio.get_running_loop()
    failures = Throttled(log)
    delay = 0.0
    while True:
        try:
            conn, addr = await loop.sock_accept(listener)
        except OSError as e:
            if e.errno in _TRANSIENT:
                continue
            if on_error is not None:
                on_error()
            delay = min(MAX_BACKOFF, delay * 2 or MIN_BACKOFF)
            name = errno.errorcode.get(e.errno or 0, "?")
            failures(
                logging.WARNING,
                "%s: accept failed: %s (%s); retrying, at most once a second",
                what,
                e.strerror or e,
                name,
            )
            await asyncio.sleep(delay)
            continue
        if delay:
            log.info("%s: accepting again after %d failed accepts", what, failures.total)
            delay = 0.0
            failures = Throttled(log)
        conn.setblocking(False)
        on_conn(conn, addr)
