# SPDX-License-Identifier: GPL-2.0-or-later
"""Real TLS-over-TCP peers for the kTLS path: GnuTLS's gnutls-serv and gnutls-cli.

Both only ever talk to 127.0.0.1. gnutls-serv runs with ``--echo`` (every record it
gets comes back); gnutls-cli sends its stdin and prints what it receives.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from pathlib import Path

TLS13_PSK = "NORMAL:-VERS-ALL:+VERS-TLS1.3:+ECDHE-PSK:+DHE-PSK:+PSK"


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class GnutlsServ:
    """``gnutls-serv --echo`` on a free port: PSK (identity -> key) and/or x509."""

    def __init__(
        self,
        workdir: Path,
        *,
        psks: dict[str, bytes] | None = None,
        priority: str = TLS13_PSK,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.port = free_tcp_port()
        self.log = workdir / f"gnutls-serv-{self.port}.log"
        cmd = ["gnutls-serv", "--port", str(self.port), "--echo", "--priority", priority]
        if psks:
            pw = workdir / f"psk-{self.port}.txt"
            pw.write_text("".join(f"{i}:{k.hex()}\n" for i, k in psks.items()))
            cmd += ["--pskpasswd", str(pw)]
        cmd += list(extra)
        self._fh = open(self.log, "wb")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(cmd, stdout=self._fh, stderr=subprocess.STDOUT)
        self._wait_listening()

    def _wait_listening(self, timeout: float = 10.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gnutls-serv exited: {self.output()}")
            if "listening on IPv4" in self.output():  # a probe connect would be served
                return
            time.sleep(0.05)
        raise RuntimeError(f"gnutls-serv not listening on {self.port}: {self.output()}")

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=5)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._fh.close()
        return self.output()


class GnutlsCli:
    """``gnutls-cli`` to 127.0.0.1:``port``: stdin is sent, received data is printed."""

    def __init__(self, port: int, *args: str, priority: str = TLS13_PSK) -> None:
        cmd = ["gnutls-cli", "-p", str(port), "--priority", priority, *args, "127.0.0.1"]
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )

    def send_line(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode() + b"\n")
        self.proc.stdin.flush()

    def finish(self, timeout: float = 10.0) -> str:
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return out.decode(errors="replace")


async def accept_one(listener: socket.socket, timeout: float = 10.0) -> socket.socket:
    """The next connection on a listening socket (without blocking the event loop)."""
    listener.setblocking(False)
    loop = asyncio.get_running_loop()
    conn, _ = await asyncio.wait_for(loop.sock_accept(listener), timeout)
    return conn
