# SPDX-License-Identifier: GPL-2.0-or-later
"""End to end: a real `quichsd` daemon process serving its unix socket, and
`quichsd-probe connect|serve --via` against ngtcp2's gtlsserver / gtlsclient."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pki import make_pki

sys.path.insert(0, str(Path(__file__).parents[1] / "interop"))
from userspace_peers import GtlsServer, free_port, gtlsclient  # noqa: E402

pytestmark = pytest.mark.peer

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    d = tmp_path_factory.mktemp("unixd")
    make_pki().write(d)
    (d / "htdocs").mkdir()
    (d / "htdocs" / "index.html").write_text("hello\n")
    sock = d / "run" / "quichsd.sock"
    cfg = d / "config.yaml"
    cfg.write_text(
        f"client:\n  x509:\n    truststore: {d / 'ca.pem'}\n"
        f"server:\n  x509:\n    certificate: {d / 'server.pem'}\n"
        f"    private_key: {d / 'server.key'}\n"
        f"unix_socket:\n  path: {sock}\n  allowed_uids: [{os.getuid()}]\n"
    )
    log = d / "daemon.log"
    proc = subprocess.Popen(
        [str(BIN / "quichsd"), "-s", "-c", str(cfg)], stdout=log.open("w"), stderr=subprocess.STDOUT
    )
    t0 = time.monotonic()
    while not sock.exists() and time.monotonic() - t0 < 15 and proc.poll() is None:
        time.sleep(0.05)
    assert sock.exists(), log.read_text()
    yield d, sock
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0, log.read_text()
    assert not sock.exists()  # removed on SIGTERM


def lines(out: str) -> list[dict[str, object]]:
    return [json.loads(x) for x in out.splitlines() if x.startswith("{")]


def test_connect_via_daemon_to_gtlsserver_with_resumption(daemon: tuple[Path, Path]) -> None:
    d, sock = daemon
    srv = GtlsServer(d, d / "server.pem", d / "server.key")
    try:
        sess = str(d / "sess.json")
        results = []
        # the third resumes and offers early data, which gtlsserver accepts (no --early-data
        # text: gtlsserver closes a connection whose request stream is not HTTP/3)
        for extra in ([], ["--session-file", sess], ["--session-file", sess]):
            p = subprocess.run(
                [str(BIN / "quichsd-probe"), "connect", "127.0.0.1", str(srv.port), "--sni",
                 "server.test", "--alpn", "h3", "--via", str(sock), *extra],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            (res,) = lines(p.stdout)
            assert p.returncode == 0 and res["ok"] is True, (p.stdout, p.stderr)
            results.append(res)
    finally:
        srv.stop()
    assert all(r["alpn"] == "h3" and r["cipher"] == "TLS_AES_128_GCM_SHA256" for r in results)
    assert [r["resumed"] for r in results] == [False, False, True]
    assert results[2]["early_data"] is True
    log = (d / "daemon.log").read_text()
    assert "(CLIENTHELLO, X509, socket-ops) done: status 0 OK" in log
    assert "resumed, 0-RTT" in log


def test_connect_via_refuses_local_credentials(daemon: tuple[Path, Path]) -> None:
    _d, sock = daemon
    p = subprocess.run(
        [str(BIN / "quichsd-probe"), "connect", "127.0.0.1", "1", "--alpn", "h3",
         "--cafile", "x.pem", "--via", str(sock)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert p.returncode == 2 and "--cafile not accepted" in p.stderr


def test_untrusted_server_fails_via_daemon(daemon: tuple[Path, Path]) -> None:
    d, sock = daemon
    srv = GtlsServer(d, d / "rogue.pem", d / "rogue.key")
    try:
        p = subprocess.run(
            [str(BIN / "quichsd-probe"), "connect", "127.0.0.1", str(srv.port), "--sni",
             "server.test", "--alpn", "h3", "--via", str(sock), "--timeout", "5"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    finally:
        srv.stop()
    (res,) = lines(p.stdout)
    assert p.returncode == 1 and res["ok"] is False and res["status"] == 13, res  # EACCES


async def test_serve_via_daemon_accepts_gtlsclient(
    daemon: tuple[Path, Path], tmp_path: Path
) -> None:
    _d, sock = daemon
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        str(BIN / "quichsd-probe"), "serve", str(port), "--alpn", "h3", "--count", "2",
        "--timeout", "5", "--via", str(sock),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    line = await asyncio.wait_for(proc.stderr.readline(), 20)
    assert b"listening on" in line, line
    sess = ["--session-file=" + str(tmp_path / "s.pem"), "--tp-file=" + str(tmp_path / "tp.bin")]
    first = await gtlsclient(port, tmp_path, *sess)
    second = await gtlsclient(port, tmp_path, *sess)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert "QUIC handshake has completed" in first and "QUIC handshake has completed" in second
    res = lines(out.decode())
    assert proc.returncode == 0 and [r["ok"] for r in res] == [True, True], res
    assert res[0]["role"] == "server" and res[0]["alpn"] == "h3"
    assert res[1]["resumed"] is True and res[1]["early_data"] is True
