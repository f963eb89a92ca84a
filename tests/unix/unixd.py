# SPDX-License-Identifier: GPL-2.0-or-later
"""A real `quichsd` daemon process serving its unix socket (and, if asked, its metrics),
for the tests in tests/unix; and the canary: one socket-ops handshake through it against
ngtcp2's gtlsserver."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from pki import make_pki

from quichsd import uapi
from quichsd.unix.client import ViaRequest, handshake_via
from quichsd.userspace.aioquic import UserspaceQuicSocket

BIN = Path(sys.executable).parent


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Daemon:
    proc: subprocess.Popen[bytes]
    dir: Path
    sock: Path
    log: Path
    metrics_port: int | None

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError(f"no VmRSS for pid {self.proc.pid}")

    def scrape(self, timeout: float = 10) -> bytes:
        """The whole HTTP response to GET /metrics."""
        assert self.metrics_port is not None
        with socket.create_connection(("127.0.0.1", self.metrics_port), timeout=timeout) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: q\r\n\r\n")
            s.shutdown(socket.SHUT_WR)
            out = b""
            while chunk := s.recv(65536):
                out += chunk
            return out

    def metric(self, name: str) -> float:
        """A sample's value (``name`` with its labels, as exposed); 0 if absent."""
        body = self.scrape().partition(b"\r\n\r\n")[2].decode()
        m = re.search(rf"^{re.escape(name)} (\S+)$", body, re.M)
        return float(m.group(1)) if m else 0.0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # in case a test left it stopped
            self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(30) == 0, self.log.read_text()[-3000:]


def start_daemon(
    d: Path,
    extra: str = "",
    *,
    metrics: bool = False,
    prefix: tuple[str, ...] = (),
    until_logged: str | None = None,
) -> Daemon:
    """A daemon in ``d`` (PKI written there) whose client role trusts the test CA;
    ``extra`` is appended to the unix_socket section (indented lines) and then to the
    file. ``prefix`` runs it under another program (e.g. ``setpriv``); with
    ``until_logged`` it is ready once its log has that text, not once it listens."""
    make_pki().write(d)
    (d / "htdocs").mkdir(exist_ok=True)
    sock = d / "run" / "quichsd.sock"
    port = free_tcp_port() if metrics else None
    text = (
        f"client:\n  x509:\n    truststore: {d / 'ca.pem'}\n"
        f"unix_socket:\n  path: {sock}\n  allowed_uids: [{os.getuid()}]\n{extra}"
    )
    if port is not None:
        text += f'metrics:\n  enabled: true\n  listen: "127.0.0.1:{port}"\n'
    (d / "config.yaml").write_text(text)
    log = d / "daemon.log"
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "JOURNAL_STREAM")}
    proc = subprocess.Popen(
        [*prefix, str(BIN / "quichsd"), "-s", "-c", str(d / "config.yaml")],
        stdout=log.open("w"), stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    daemon = Daemon(proc, d, sock, log, port)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 15 and proc.poll() is None:
        if until_logged is not None:
            if until_logged in log.read_text(errors="replace"):
                return daemon
        elif sock.exists() and (port is None or _listening(port)):
            return daemon
        time.sleep(0.05)
    daemon.stop()
    raise AssertionError(f"daemon did not start:\n{log.read_text()}")


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


async def quic_client(port: int) -> UserspaceQuicSocket:
    """A userspace QUIC client socket for gtlsserver on ``port`` (no handshake yet)."""
    return await UserspaceQuicSocket.connect(
        "127.0.0.1", port, alpns=[b"h3"], server_name="server.test"
    )


async def via(sock_path: Path, sock: UserspaceQuicSocket, timeout_ms: int = 30_000) -> int:
    """The client handshake on ``sock``, run by the daemon at ``sock_path``: its status."""
    req = ViaRequest(uapi.MsgType.CLIENTHELLO, peer_name="server.test", timeout_ms=timeout_ms)
    return (await handshake_via(str(sock_path), sock, req)).status


async def canary(sock_path: Path, port: int, timeout_ms: int = 30_000) -> int:
    """One socket-ops client handshake through the daemon at ``sock_path`` to the
    gtlsserver on ``port``: its RESULT status."""
    sock = await quic_client(port)
    try:
        return await via(sock_path, sock, timeout_ms)
    finally:
        sock.close()
        await sock.wait_closed()


async def until(cond: object, timeout: float = 10, what: str = "") -> None:
    """Poll ``cond()`` every 50 ms until it is true (AssertionError after ``timeout`` s)."""
    assert callable(cond)
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout, f"timed out waiting for {what or cond}"
        await asyncio.sleep(0.05)
