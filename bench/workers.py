# SPDX-License-Identifier: GPL-2.0-or-later
"""Daemon-level throughput with ``handshake.workers`` = 1 vs 2 (``python -m bench.workers``).

The real HandshakeAgent and WorkerPool (fork server, fd hand-over, DONE from the worker)
with the kernel replaced at the netlink seam: N requests are pending at start, each an
accepted UDP fd; every request's handler runs one full in-memory handshake pair (client +
server, driver + engine, as bench/load.py) in the process that serves it. ``inline`` is
workers = 1 (the handler runs in the main process). Pairs/s, wall clock; run it on an
otherwise idle host.

Each configuration first serves a warm-up batch through a separate agent on the same
pool (workers import GnuTLS and the engine on their first request, a once-per-daemon cost
that is not throughput), then N timed requests. The configurations alternate for
``ROUNDS`` rounds and the median of each is reported (every round's figure too), so a
burst of other load on the host shows as spread rather than as a skewed ratio.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import struct
import sys
import time

from quichsd.driver import run_handshake
from quichsd.netlink import AcceptRequest, HandshakeAgent, HandshakeOutcome
from quichsd.workers import ReplayStore, WorkerPool
from quichsd.workers.worker import Worker

from .fixture import OUT, load_daemon, write_pki

FAMILY = 0x21
ROUNDS = 3
WARMUP = 64  # requests per configuration before the timed ones


class Kernel:
    """Netlink seam: ACCEPT hands out pending UDP fds, DONE is counted."""

    def __init__(self, fds: list[int]) -> None:
        self.fds = fds
        self.dones = 0

    @property
    def family_id(self) -> int:
        return FAMILY

    async def open(self) -> None:
        pass

    async def recv(self) -> list[bytes]:
        await asyncio.sleep(3600)
        return []

    async def request(self, body: bytes, flags: int) -> list[bytes]:
        if body[0] == 3:
            self.dones += 1
            return []
        if not self.fds:
            raise OSError(11, "EAGAIN")
        attrs = struct.pack("=HHi", 8, 1, self.fds.pop()) + struct.pack("=HHI", 8, 3, 2)
        attrs += struct.pack("=HHI", 8, 5, 2)
        hdr = struct.pack("=IHHIIBBH", 20 + len(attrs), FAMILY, 0, 1, 1, 2, 1, 0)
        return [hdr + attrs]

    async def close(self) -> None:
        pass


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 600
    pki = {"cert": OUT / "pki/server.pem", "key": OUT / "pki/server.key", "ca": OUT / "pki/ca.pem"}
    if not pki["cert"].exists():
        pki = write_pki()
    d = load_daemon(pki)

    async def pair(request: AcceptRequest, sock: socket.socket) -> HandshakeOutcome:
        c, s = d.pair(receive_ticket=False)
        a, b = await asyncio.gather(run_handshake(c, d.client_req), run_handshake(s, d.server_req))
        c.close()
        s.close()
        return HandshakeOutcome(0 if a.ok and b.ok else 5)

    def worker_main(chan: socket.socket, replay: socket.socket) -> int:
        return asyncio.run(Worker(chan, pair, Kernel([]), reload=None, grace=1.0).run())

    def udp_fds(count: int) -> list[int]:
        fds = []
        for _ in range(count):
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            u.connect(("127.0.0.1", 4420))
            fds.append(u.detach())
        return fds

    async def run(workers: int) -> dict[str, float]:
        pool = None
        handler = pair
        if workers > 1:
            pool = WorkerPool(workers, worker_main, store=ReplayStore(), fallback=pair)
            await pool.start()
            handler = pool.handle
        warm = HandshakeAgent(Kernel(udp_fds(WARMUP)), handler, max_in_flight=64, quic_protocol=17)
        await warm.start()
        await warm.wait_idle()
        await warm.stop(1)
        kernel = Kernel(udp_fds(n))
        agent = HandshakeAgent(kernel, handler, max_in_flight=64, quic_protocol=17)
        t0, c0 = time.perf_counter(), time.process_time()
        await agent.start()
        await agent.wait_idle()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        await agent.stop(1)
        if pool is not None:
            await pool.stop(1)
        return {"workers": workers, "n": n, "pairs_per_s": n / wall, "main_cpu_s": cpu}

    # the fork server must be forked before a loop runs: one per configuration and round
    runs: dict[int, list[dict[str, float]]] = {1: [], 2: []}
    for _ in range(ROUNDS):
        for w in (1, 2):
            runs[w].append(asyncio.run(run(w)))
    out = []
    for w, rs in runs.items():
        rate = statistics.median(r["pairs_per_s"] for r in rs)
        cpu = statistics.median(r["main_cpu_s"] for r in rs)
        out.append(
            {
                "workers": w,
                "n": n,
                "pairs_per_s": rate,
                "main_cpu_s": cpu,
                "rounds_pairs_per_s": [round(r["pairs_per_s"], 1) for r in rs],
            }
        )
    for r in out:
        print(json.dumps(r))
    print(f"scaling 1 -> 2 workers: x{out[1]['pairs_per_s'] / out[0]['pairs_per_s']:.2f}")
    os._exit(0)


if __name__ == "__main__":
    main()
