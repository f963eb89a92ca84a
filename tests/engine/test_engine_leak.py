# SPDX-License-Identifier: GPL-2.0-or-later
"""No leak: thousands of full x509 handshakes leave fds and RSS flat."""

from __future__ import annotations

import os
import time

import pytest
from engine_helpers import roundtrip

from quichsd.tls.engine import Engine, EngineConfig

WARMUP = 200
ROUNDS = 5000
RSS_BOUND = 8 * 1024 * 1024  # a leak of even 2 KB per handshake would pass 10 MB


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def one(ccfg: EngineConfig, scfg: EngineConfig) -> None:
    c, s = Engine(ccfg), Engine(scfg)
    try:
        t = roundtrip(c, s)
        assert not t.errors and c.complete and s.complete
    finally:
        c.close()
        s.close()


@pytest.mark.slow
def test_no_leak_over_5000_handshakes(client_cfg: EngineConfig, server_cfg: EngineConfig) -> None:
    for _ in range(WARMUP):
        one(client_cfg, server_cfg)
    fd0, rss0 = open_fds(), rss_bytes()
    start = time.monotonic()
    for _ in range(ROUNDS):
        one(client_cfg, server_cfg)
    took = time.monotonic() - start
    fd1, rss1 = open_fds(), rss_bytes()
    print(
        f"\nleak check: {ROUNDS} full x509 handshakes in {took:.1f} s; "
        f"fds {fd0} -> {fd1} (delta {fd1 - fd0}); "
        f"RSS {rss0 / 2**20:.1f} -> {rss1 / 2**20:.1f} MiB "
        f"(growth {(rss1 - rss0) / 1024:.0f} KiB, {(rss1 - rss0) / ROUNDS:.1f} B/handshake)"
    )
    assert fd1 - fd0 == 0
    assert rss1 - rss0 < RSS_BOUND
