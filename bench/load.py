# SPDX-License-Identifier: GPL-2.0-or-later
"""Concurrency: K handshake pairs in flight, latency and throughput, 1 core vs 2.

Run as a child (``python -m bench.load K N MODE``) so each configuration gets a fresh
process pinned with taskset by the parent. The child sets up the daemon state, prints
"ready", waits for a line on stdin (so parallel workers start together), runs N pairs
with K in flight (K workers, each running pairs back to back), and prints JSON.

MODE: ``loop`` (executor=None, everything on the event loop thread) or ``threads``
(executor=ThreadPoolExecutor(2): GnuTLS steps run in 2 threads, which release the GIL).
A latency is one pair's wall time, first step of either side to the last. The client
does not wait for a session ticket here (quic_config.receive_session_ticket = 0): the
driver polls for it every 100 ms, which would dominate the latency; the server still
issues one.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from quichsd.driver import run_handshake

from .fixture import OUT, Daemon, load_daemon, write_pki


async def _load(d: Daemon, k: int, n: int) -> dict[str, Any]:
    lat: list[float] = []
    remaining = n

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            c, s = d.pair(receive_ticket=False)
            t0 = time.perf_counter()
            a, b = await asyncio.gather(
                run_handshake(c, d.client_req), run_handshake(s, d.server_req)
            )
            lat.append(time.perf_counter() - t0)
            c.close()
            s.close()
            if not (a.ok and b.ok):
                raise RuntimeError(f"handshake failed: {a.error} / {b.error}")

    t0, c0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(k)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"k": k, "n": len(lat), "wall_s": wall, "process_cpu_s": cpu, "latency_s": lat}


def main(argv: list[str]) -> None:
    k, n, mode = int(argv[0]), int(argv[1]), argv[2]
    pki = {"cert": OUT / "pki/server.pem", "key": OUT / "pki/server.key", "ca": OUT / "pki/ca.pem"}
    if not pki["cert"].exists():
        pki = write_pki()
    d = load_daemon(pki)
    pool = ThreadPoolExecutor(2) if mode == "threads" else None
    d = d.with_executor(pool)
    asyncio.run(_load(d, min(k, 8), min(n, 16)))  # warm-up
    gc.collect()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    sys.stdin.readline()
    out = asyncio.run(_load(d, k, n))
    out["mode"] = mode
    if pool is not None:
        pool.shutdown()
    sys.stdout.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
