# SPDX-License-Identifier: GPL-2.0-or-later
"""Memory: idle daemon RSS, and RSS per in-flight server handshake at K = 1,000.

Per in-flight handshake (child: ``python -m bench.mem K``): K ClientHellos are made first
with client engines (then freed, gc'd and malloc_trim'd), K memory socket pairs are
created and each server socket gets its ClientHello; RSS is read (baseline). Then K
server-side ``run_handshake`` tasks start, answer their ClientHello and wait for the
client's Finished, which never comes. The server flights they sent are dropped from the
memory sockets (in a real daemon they are in the kernel), gc runs, RSS is read again.
(after - baseline) / K is what one waiting handshake costs the daemon: driver, engine,
GnuTLS session, asyncio task, reader registration.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import json
import resource
import sys
from pathlib import Path

from quichsd.driver import engine_config, read_settings, run_handshake
from quichsd.tls.engine import Engine
from quichsd.tls.events import CryptoData
from quichsd.uapi import CryptoLevel

from .fixture import OUT, load_daemon, write_pki


def rss_kb(pid: str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS in /proc/{pid}/status")


def _trim() -> None:
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)


async def _inflight(k: int) -> dict[str, float]:
    pki = {"cert": OUT / "pki/server.pem", "key": OUT / "pki/server.key", "ca": OUT / "pki/ca.pem"}
    if not pki["cert"].exists():
        pki = write_pki()
    d = load_daemon(pki)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8 * k + 256)), hard))
    # warm-up: one complete handshake so lazy imports and caches exist before the baseline
    c, s = d.pair(receive_ticket=False)
    await asyncio.gather(run_handshake(c, d.client_req), run_handshake(s, d.server_req))
    c.close()
    s.close()
    hellos = []
    for _ in range(k):
        c, s = d.pair()
        eng = Engine(engine_config(d.client_req, read_settings(c)))
        eng.start()
        hellos.append(b"".join(e.data for e in eng.events() if isinstance(e, CryptoData)))
        eng.close()
        c.close()
        s.close()
    del eng
    pairs = [d.pair(receive_ticket=False) for _ in range(k)]
    for (_c, s), ch in zip(pairs, hellos, strict=True):
        s.inject(CryptoLevel.INITIAL, ch)
    _trim()
    before = rss_kb()
    tasks = [asyncio.create_task(run_handshake(s, d.server_req)) for _c, s in pairs]
    for _ in range(1000):
        await asyncio.sleep(0.01)
        if all(c.inbox for c, _s in pairs):
            break
    answered = sum(1 for c, _s in pairs if c.inbox)
    waiting = sum(1 for t in tasks if not t.done())
    for c, _s in pairs:
        c.inbox.clear()
    gc.collect()
    after = rss_kb()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "k": k,
        "answered": answered,
        "waiting": waiting,
        "rss_before_kb": before,
        "rss_after_kb": after,
        "per_handshake_bytes": (after - before) * 1024 / k,
    }


if __name__ == "__main__":
    sys.stdout.write(json.dumps(asyncio.run(_inflight(int(sys.argv[1])))) + "\n")
