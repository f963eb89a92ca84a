# SPDX-License-Identifier: GPL-2.0-or-later
"""A handshake storm through a real daemon's unix socket (fault catalogue 2.6; issue 11's
load test): 1,000 clients at once, three times, each a userspace QUIC socket whose TLS the
daemon runs (socket-ops), against ngtcp2's gtlsserver. The sockets are made first, then
all 1,000 handshakes start in one go: their connects overflow the daemon's listen backlog
(64) many times over, so this also exercises the client waiting for its connection
(issue 11 item 18). Every handshake must succeed within the time bound,
the daemon must give back every fd after each round, and after the first round its heap
(C and Python, from its metrics) must not grow by a leak's worth in a round."""

from __future__ import annotations

import asyncio
import resource
import sys
import time
from pathlib import Path

import pytest
from unixd import quic_client, start_daemon, until, via

sys.path.insert(0, str(Path(__file__).parents[1] / "interop"))
from userspace_peers import GtlsServer  # noqa: E402

pytestmark = pytest.mark.peer

CLIENTS = 1000
ROUNDS = 3
#: seconds for one round of CLIENTS handshakes; a round took 4-12 s here (2 cores shared
#: with other work, the whole test 12-32 s)
ROUND_LIMIT = 120
#: fds this process needs: a UDP socket and a unix connection per client, and slack
FDS_NEEDED = 2 * CLIENTS + 256


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < FDS_NEEDED:
        if hard != resource.RLIM_INFINITY and hard < FDS_NEEDED:
            pytest.fail(f"RLIMIT_NOFILE hard limit {hard} < {FDS_NEEDED} needed for the storm")
        resource.setrlimit(resource.RLIMIT_NOFILE, (FDS_NEEDED, hard))


async def test_storm_of_1000_socket_ops_handshakes_through_the_daemon(tmp_path: Path) -> None:
    raise_fd_limit()  # the daemon inherits it: it holds a connection per client
    daemon = start_daemon(tmp_path, "handshake:\n  max_in_flight: 2048\n", metrics=True)
    server = GtlsServer(tmp_path, tmp_path / "server.pem", tmp_path / "server.key", "-q")
    try:
        idle_fds = daemon.fds()
        print(f"daemon RSS before the storm: {daemon.rss_kb()} KiB")
        rss: list[int] = []
        heap: list[tuple[float, float]] = []
        for n in range(ROUNDS):
            t0 = time.monotonic()
            socks = await asyncio.gather(*(quic_client(server.port) for _ in range(CLIENTS)))
            try:
                statuses = await asyncio.wait_for(
                    asyncio.gather(*(via(daemon.sock, s, ROUND_LIMIT * 1000) for s in socks)),
                    ROUND_LIMIT,
                )
            finally:
                for s in socks:
                    s.close()
                await asyncio.gather(*(s.wait_closed() for s in socks))
            took = time.monotonic() - t0
            print(f"round {n + 1}: {CLIENTS} handshakes in {took:.1f} s")
            assert statuses == [0] * CLIENTS, sorted(set(statuses))
            # the daemon closes each connection after its RESULT
            await until(lambda: daemon.fds() == idle_fds, what=f"daemon fds back to {idle_fds}")
            rss.append(daemon.rss_kb())
            heap.append(
                (
                    daemon.metric("quichsd_malloc_in_use_bytes"),
                    daemon.metric("quichsd_python_allocated_blocks"),
                )
            )
            print(f"round {n + 1}: RSS {rss[-1]} KiB, heap (C bytes, Python blocks) {heap[-1]}")
        # round 1 warms caches. The RSS is no leak test: it keeps the allocators' high-water
        # mark, which grows with a round's peak concurrency (seen here: +7.3 MiB from round 1
        # to 2 with the heap flat). The daemon's own heap gauges fall back when memory is
        # freed: after round 1 neither may grow by a leak's worth per round, 256 bytes of C
        # heap (a GnuTLS session is several KiB) or one Python block per handshake (seen:
        # +44 KiB/+7 KiB and +252/-3 blocks)
        for (c0, p0), (c1, p1) in zip(heap, heap[1:], strict=False):
            assert c1 - c0 < 256 * CLIENTS and p1 - p0 < CLIENTS, heap
        print(f"daemon RSS after each round: {rss} KiB")
    finally:
        server.stop()
        daemon.stop()
    done = [x for x in daemon.log.read_text().splitlines() if "socket-ops) done: status 0 OK" in x]
    assert len(done) == CLIENTS * ROUNDS  # one completion line per handshake
