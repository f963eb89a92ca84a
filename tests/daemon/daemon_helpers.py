# SPDX-License-Identifier: GPL-2.0-or-later
"""A real ``quichsd`` process with a test PKI and its unix socket, and the canary
handshakes through it against ngtcp2's gtlsserver / gtlsclient (as tests/unix does):
``canary_connect`` (client role, the daemon's trust store) and ``canary_serve`` (server
role, the daemon's certificate and private key)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pki import make_pki

sys.path.insert(0, str(Path(__file__).parents[1] / "interop"))
from userspace_peers import GtlsServer, free_port, gtlsclient  # noqa: E402

BIN = Path(sys.executable).parent


def pki_config(d: Path, *, cert: str = "server.pem", key: str = "server.key") -> str:
    """Config text: trust store, server certificate and key (names in ``d``), unix socket."""
    return (
        f"client:\n  x509:\n    truststore: {d / 'ca.pem'}\n"
        f"server:\n  x509:\n    certificate: {d / cert}\n"
        f"    private_key: {d / key}\n"
        f"unix_socket:\n  path: {d / 'run' / 'quichsd.sock'}\n  allowed_uids: [{os.getuid()}]\n"
    )


def make_daemon_dir(d: Path) -> Path:
    """PKI files (tests/pki.py names), htdocs for gtlsserver, and ``config.yaml``."""
    make_pki().write(d)
    (d / "htdocs").mkdir(exist_ok=True)
    (d / "htdocs" / "index.html").write_text("hello\n")
    cfg = d / "config.yaml"
    cfg.write_text(pki_config(d))
    return cfg


class Daemon:
    """``quichsd -s -c CFG``, its output in ``d/daemon.log``."""

    def __init__(self, d: Path, cfg: Path, *, wait: bool = True) -> None:
        self.d, self.cfg = d, cfg
        self.sock = d / "run" / "quichsd.sock"
        self.log = d / "daemon.log"
        env = dict(os.environ)
        env.pop("JOURNAL_STREAM", None)
        env.pop("NOTIFY_SOCKET", None)
        self.proc = subprocess.Popen(
            [str(BIN / "quichsd"), "-s", "-c", str(cfg)],
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
            env=env,
        )
        if wait:
            self.wait_log("running:")

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_log(self, needle: str, timeout: float = 20.0, count: int = 1) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            text = self.text()
            if text.count(needle) >= count:
                return text
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{needle!r} (x{count}) not logged; rc {self.proc.poll()}:\n{text}")

    def send(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"daemon did not stop on {sig}:\n{self.text()}") from None


def _results(out: str) -> list[dict[str, object]]:
    return [json.loads(x) for x in out.splitlines() if x.startswith("{")]


def canary_connect(d: Path, sock: Path) -> dict[str, object]:
    """``quichsd-probe connect --via`` to gtlsserver (server.pem); the probe's result."""
    srv = GtlsServer(d, d / "server.pem", d / "server.key")
    try:
        p = subprocess.run(
            [str(BIN / "quichsd-probe"), "connect", "127.0.0.1", str(srv.port), "--sni",
             "server.test", "--alpn", "h3", "--via", str(sock), "--timeout", "10"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    finally:
        srv.stop()
    (res,) = _results(p.stdout)
    return res


async def _serve(sock: Path, d: Path) -> tuple[dict[str, object], str]:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        str(BIN / "quichsd-probe"), "serve", str(port), "--alpn", "h3", "--count", "1",
        "--timeout", "10", "--via", str(sock),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    line = await asyncio.wait_for(proc.stderr.readline(), 20)
    assert b"listening on" in line, line
    client = await gtlsclient(port, d)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    (res,) = _results(out.decode())
    return res, client


def canary_serve(d: Path, sock: Path) -> tuple[dict[str, object], str]:
    """``quichsd-probe serve --via`` accepting one gtlsclient: (probe result, client log)."""
    return asyncio.run(_serve(sock, d))


def assert_canaries(d: Path, sock: Path) -> None:
    """Both roles handshake through the daemon with real peers."""
    res = canary_connect(d, sock)
    assert res["ok"] is True and res["alpn"] == "h3", res
    res, client = canary_serve(d, sock)
    assert res["ok"] is True and "QUIC handshake has completed" in client, (res, client)
