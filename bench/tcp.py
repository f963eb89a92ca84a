# SPDX-License-Identifier: GPL-2.0-or-later
"""CPU per TCP PSK handshake (both sides): quichsd's TCP path vs the GnuTLS C floor.

``python -m bench.tcp [N]``: builds ``bench/tcp_floor.c`` into ``bench/out/tcp_floor`` and
runs both on the same machine. Both sides run in one thread over a non-blocking
socketpair(AF_UNIX, SOCK_STREAM) (the kernel's TCP cost is neither's), with a 32-byte
external PSK (NVMe ``NVMe1R01`` style identity), the same priority string
(``tcp_priority_string`` of the shipped config's policy), and the key/IV/sequence read
for both directions (what the kTLS hand-over takes); kTLS itself is not installed (a
recorder stands in for the setsockopt calls). quichsd's number is process CPU over N
handshakes of ``run_tcp_handshake`` on both ends (driver, session, asyncio loop);
the floor's is getrusage over N of its own. Prints one row: a ratio, not a timed test.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from quichsd.config import load_config
from quichsd.gnutls._lib import version as gnutls_version
from quichsd.request import HandshakeRequest
from quichsd.service import tls_policy
from quichsd.tcpdriver import run_tcp_handshake, tcp_engine_config
from quichsd.tls.config import Auth, Role
from quichsd.tls.tcp import tcp_priority_string

HERE = Path(__file__).resolve().parent
KEY = bytes(range(1, 11)) + bytes(22)  # the floor's KEY[32]
IDENTITY = "NVMe1R01 host sub"


def build_floor() -> Path:
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    exe = out / "tcp_floor"
    src = HERE / "tcp_floor.c"
    if not exe.exists() or exe.stat().st_mtime < src.stat().st_mtime:
        flags = subprocess.run(
            ["pkg-config", "--cflags", "--libs", "gnutls"], capture_output=True, text=True
        ).stdout.split()
        subprocess.run(["gcc", "-O2", "-o", str(exe), str(src), *flags], check=True)
    return exe


def requests() -> tuple[HandshakeRequest, HandshakeRequest]:
    policy = tls_policy(load_config(str(HERE.parent / "etc" / "quichsd" / "config.yaml")))
    client = HandshakeRequest(
        role=Role.CLIENT, auth=Auth.PSK, psk_identity=IDENTITY, psk_key=KEY, policy=policy
    )
    server = HandshakeRequest(
        role=Role.SERVER, auth=Auth.PSK, psk_lookup=lambda i: KEY, policy=policy
    )
    return client, server


def no_install(*_args: object) -> None:
    """Stands in for kTLS (the traffic state is read and packed before this is called)."""


async def quichsd_cpu(n: int) -> float:
    client, server = requests()
    for i in range(n + 20):
        if i == 20:  # warm-up done
            start = time.process_time()
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with a, b:
            r1, r2 = await asyncio.gather(
                run_tcp_handshake(a, client, no_install), run_tcp_handshake(b, server, no_install)
            )
        assert r1.ok and r2.ok, (r1.error, r2.error)
    return (time.process_time() - start) / n * 1e6


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    client, _ = requests()
    prio = tcp_priority_string(tcp_engine_config(client))
    floor = build_floor()
    out = subprocess.run([str(floor), str(n), prio], capture_output=True, text=True, check=True)
    floor_us = float(out.stdout.split()[1])
    ours = asyncio.run(quichsd_cpu(n))
    print(f"priority: {prio}")
    print(f"{'TCP PSK handshake, both sides':34} {'quichsd':>10} {'C floor':>10} {'ratio':>7}")
    print(f"{'CPU per handshake (us)':34} {ours:10.0f} {floor_us:10.0f} {ours / floor_us:7.2f}")
    print(f"(N={n}, GnuTLS {gnutls_version()}, {os.cpu_count()} CPUs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
