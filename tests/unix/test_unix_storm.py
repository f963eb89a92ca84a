"""A handshake storm through a real daemon's unix socket (fault catalogue 2.6): 150 clients
at once, three times, each a userspace QUIC socket whose TLS the daemon runs (socket-ops),
against ngtcp2's gtlsserver. Every handshake must succeed, and the daemon must give back
every fd and not grow once warm (a leak of 10 KB per handshake would add 3 MB here)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pki import make_pki

from quichsd import uapi
from quichsd.unix.client import ViaRequest, handshake_via
from quichsd.userspace.aioquic import UserspaceQuicSocket

sys.path.insert(0, str(Path(__file__).parents[1] / "interop"))
from userspace_peers import GtlsServer  # noqa: E402

pytestmark = pytest.mark.peer

BIN = Path(sys.executable).parent
CLIENTS = 150
ROUNDS = 3


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def one(sock_path: Path, port: int) -> int:
    sock = await UserspaceQuicSocket.connect(
        "127.0.0.1", port, alpns=[b"h3"], server_name="server.test"
    )
    try:
        req = ViaRequest(uapi.MsgType.CLIENTHELLO, peer_name="server.test", timeout_ms=30_000)
        return (await handshake_via(str(sock_path), sock, req)).status
    finally:
        sock.close()
        await sock.wait_closed()


async def test_storm_of_socket_ops_handshakes_through_the_daemon(tmp_path: Path) -> None:
    make_pki().write(tmp_path)
    (tmp_path / "htdocs").mkdir()
    sock_path = tmp_path / "run" / "quichsd.sock"
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        f"client:\n  x509:\n    truststore: {tmp_path / 'ca.pem'}\n"
        f"unix_socket:\n  path: {sock_path}\n  allowed_uids: [{os.getuid()}]\n"
    )
    log = tmp_path / "daemon.log"
    daemon = subprocess.Popen(
        [str(BIN / "quichsd"), "-s", "-c", str(cfg)], stdout=log.open("w"), stderr=subprocess.STDOUT
    )
    server = GtlsServer(tmp_path, tmp_path / "server.pem", tmp_path / "server.key", "-q")
    try:
        t0 = time.monotonic()
        while not sock_path.exists() and time.monotonic() - t0 < 15 and daemon.poll() is None:
            await asyncio.sleep(0.05)
        assert sock_path.exists(), log.read_text()
        idle_fds = fds(daemon.pid)
        rss: list[int] = []
        for _ in range(ROUNDS):
            statuses = await asyncio.gather(*(one(sock_path, server.port) for _ in range(CLIENTS)))
            assert statuses == [0] * CLIENTS, sorted(set(statuses))
            await asyncio.sleep(0.3)  # the daemon closes each connection after its RESULT
            assert fds(daemon.pid) == idle_fds
            rss.append(rss_kb(daemon.pid))
        # round 1 warms caches and the allocator; rounds 2 and 3 must not grow
        assert rss[-1] - rss[0] < 3 * 1024, rss
    finally:
        server.stop()
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(15) == 0, log.read_text()[-3000:]
    done = [x for x in log.read_text().splitlines() if "socket-ops) done: status 0 OK" in x]
    assert len(done) == CLIENTS * ROUNDS  # one completion line per handshake
