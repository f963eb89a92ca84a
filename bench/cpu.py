# SPDX-License-Identifier: GPL-2.0-or-later
"""Per-side CPU time of quichsd's driver + engine, both sides in one thread.

Method: each side's ``run_handshake`` coroutine is wrapped so that every step the event
loop runs of it (from one ``await`` suspension to the next) is timed with
``time.thread_time()``. Everything done on behalf of one side -- driver, engine, GnuTLS
calls, ctypes callbacks, and its calls into the memory socket (which stand in for the
kernel's getsockopt/sendmsg/recvmsg) -- is charged to that side; nothing of the other
side is. What no side's step covers (selector polls, reader callbacks, task scheduling:
the event loop itself) is reported separately as ``loop`` = thread CPU of the whole batch
minus both sides. A daemon serving one side pays its side plus (roughly half of) the loop;
``daemon_side_with_loop`` charges the whole loop to the side, the pessimistic bound.

Executor is None here: the GnuTLS steps run on the measured thread. Handshakes run in
batches (asyncio.gather) so that the client's ticket wait (the driver polls the socket
every 100 ms) overlaps; CPU attribution does not depend on the batching.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Coroutine, Generator
from typing import Any

from quichsd.driver import HandshakeResult, run_handshake

from .fixture import Daemon


class Timed:
    """Await a coroutine, adding the thread CPU of each of its steps to ``cpu``."""

    def __init__(self, coro: Coroutine[Any, Any, HandshakeResult]) -> None:
        self.coro = coro
        self.cpu = 0.0

    def __await__(self) -> Generator[Any, Any, HandshakeResult]:
        coro, clock = self.coro, time.thread_time
        value: Any = None
        exc: BaseException | None = None
        while True:
            t0 = clock()
            try:
                y = coro.throw(exc) if exc is not None else coro.send(value)
            except StopIteration as stop:
                self.cpu += clock() - t0
                return stop.value  # type: ignore[no-any-return]
            self.cpu += clock() - t0
            try:
                value, exc = (yield y), None
            except BaseException as e:  # cancellation and the like go to the coroutine
                value, exc = None, e


async def get_ticket(d: Daemon) -> bytes:
    c, s = d.pair()
    a, b = await asyncio.gather(run_handshake(c, d.client_req), run_handshake(s, d.server_req))
    c.close()
    s.close()
    if not (a.ok and b.ok and c.stored_ticket):
        raise RuntimeError(f"ticket handshake failed: {a.error} / {b.error}")
    return c.stored_ticket


async def measure(d: Daemon, n: int, resumed: bool, batch: int = 50) -> dict[str, Any]:
    """Per-handshake CPU (µs) of each side; ``loop`` is the unattributed event-loop share."""
    ticket = await get_ticket(d) if resumed else b""
    server: list[float] = []
    client: list[float] = []
    loop_total = 0.0
    n_resumed = 0
    gc.collect()
    done = 0
    while done < n:
        k = min(batch, n - done)
        pairs = [d.pair(session_data=ticket) for _ in range(k)]
        timers = [
            (Timed(run_handshake(c, d.client_req)), Timed(run_handshake(s, d.server_req)))
            for c, s in pairs
        ]
        t0 = time.thread_time()
        results = await asyncio.gather(*(t for pair in timers for t in pair))
        total = time.thread_time() - t0
        for r in results:
            if not r.ok:
                raise RuntimeError(f"handshake failed: {r.error}")
        for i, (tc, ts) in enumerate(timers):
            client.append(tc.cpu * 1e6)
            server.append(ts.cpu * 1e6)
            info = results[2 * i + 1].info
            n_resumed += bool(info and info.resumed)
        loop_total += total - sum(tc.cpu + ts.cpu for tc, ts in timers)
        for c, s in pairs:
            c.close()
            s.close()
        done += k
    return {
        "n": n,
        "resumed": n_resumed,
        "server_us": server,
        "client_us": client,
        "loop_us_per_handshake": loop_total * 1e6 / n,
    }
