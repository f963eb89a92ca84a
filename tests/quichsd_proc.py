# SPDX-License-Identifier: GPL-2.0-or-later
"""A real ``quichsd -s`` process serving its unix socket, with a config the test writes.

:class:`QuichsdProcess` starts the daemon, waits for its socket, and stops it with SIGTERM
(asserting exit 0). :func:`via_connect` runs one socket-ops client handshake through it
with a userspace QUIC socket (aioquic) to a real server on loopback, and
:func:`canary` checks the daemon still serves a good handshake afterwards.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from quichsd import uapi
from quichsd.unix import codec
from quichsd.unix.client import ViaError, ViaRequest, handshake_via
from quichsd.userspace.aioquic import UserspaceQuicSocket

BIN = Path(sys.executable).parent


class QuichsdProcess:
    """``quichsd -s -c DIR/config.yaml``; ``body`` is the config without unix_socket."""

    def __init__(
        self,
        d: Path,
        body: str,
        *,
        env: dict[str, str] | None = None,
        wrap: tuple[str, ...] = (),
        stderr_only: bool = True,
        journal_stream: bool = False,
        command: list[str] | None = None,
    ) -> None:
        """``command``: the daemon's command instead of this venv's ``quichsd`` (e.g. an
        unpacked package's run by the system python); ``wrap``: a command prefix (e.g.
        ``unshare -m ...``); ``stderr_only`` False
        leaves out ``-s``, so the daemon picks its log target itself; ``journal_stream``
        sets ``JOURNAL_STREAM`` to the log file's device and inode, as systemd does for
        the stream it connects to a service's stderr."""
        self.dir = d
        self.sock = d / "run" / "quichsd.sock"
        self.config = d / "config.yaml"
        self.config.write_text(
            body + f"unix_socket:\n  path: {self.sock}\n  allowed_uids: [{os.getuid()}]\n"
        )
        self.log_path = d / "daemon.log"
        out = self.log_path.open("w")
        full_env = dict(os.environ)
        full_env.pop("JOURNAL_STREAM", None)
        if journal_stream:
            st = os.fstat(out.fileno())
            full_env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        full_env.update(env or {})
        argv = [
            *(command or [str(BIN / "quichsd")]),
            *(["-s"] if stderr_only else []),
            "-c",
            str(self.config),
        ]
        self.proc = subprocess.Popen(
            [*wrap, *argv], stdout=out, stderr=subprocess.STDOUT, env=full_env
        )
        out.close()
        t0 = time.monotonic()
        while not self.sock.exists() and time.monotonic() - t0 < 20 and self.proc.poll() is None:
            time.sleep(0.05)
        assert self.sock.exists(), self.log()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, needle: str, timeout: float = 10) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            text = self.log()
            if needle in text:
                return text
            time.sleep(0.05)
        raise AssertionError(f"{needle!r} not logged:\n{self.log()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(15) == 0, self.log()


async def via_connect(
    daemon: QuichsdProcess,
    port: int,
    peer_name: str | None,
    *,
    alpn: str = "h3",
    timeout_ms: int = 5000,
) -> codec.Result:
    """One socket-ops client handshake run by ``daemon`` to 127.0.0.1:``port``."""
    sock = await UserspaceQuicSocket.connect("127.0.0.1", port, alpns=[alpn])
    req = ViaRequest(uapi.MsgType.CLIENTHELLO, peer_name=peer_name, timeout_ms=timeout_ms)
    try:
        return await handshake_via(str(daemon.sock), sock, req)
    except ViaError as e:
        return codec.Result(e.status, error=e.text)
    finally:
        sock.close()
        await sock.wait_closed()


async def canary(daemon: QuichsdProcess, port: int, peer_name: str = "server.test") -> None:
    """The daemon still serves: a good handshake to the server at ``port`` succeeds."""
    res = await via_connect(daemon, port, peer_name)
    assert res.status == 0, (res, daemon.log()[-3000:])
