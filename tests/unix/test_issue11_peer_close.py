# SPDX-License-Identifier: GPL-2.0-or-later
"""Issue 11 items 14 and 17: a peer that closes during the handshake, through a real daemon.

The peer is aioquic with its own TLS (tests/interop/userspace_peers.py), closing right
after its first flight (ServerHello, EncryptedExtensions, Certificate...). Our side is a
real ``quichsd`` running the handshake for a socket-ops client (the userspace QUIC socket
of the test), where the close reaches the daemon after the ServerHello it follows.

Item 14: the peer's reason phrase reaches the log escaped, never as a line of its own.
Item 17: the close races the installation of the keys the ServerHello gave; the handshake
fails as the peer closed it (EACCES for an alert, ECONNRESET otherwise), never EINVAL.
"""

from __future__ import annotations

import errno
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pki import write_peer_dir
from quichsd_proc import QuichsdProcess, canary, via_connect

sys.path.insert(0, str(Path(__file__).parents[1] / "interop"))
from userspace_peers import GtlsServer, aioquic_aborting_server, free_port  # noqa: E402

pytestmark = pytest.mark.peer

ALERT_HANDSHAKE_FAILURE = 0x100 + 40
NO_ERROR = 0x0
FORGED = "quichsd[1]: INFO quichsd.unix: forged"  # the phrase is cut at 63 bytes


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_peer_dir(tmp_path_factory.mktemp("pki11c"))


@pytest.fixture(scope="module")
def daemon(pki_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[QuichsdProcess]:
    d = QuichsdProcess(
        tmp_path_factory.mktemp("d11c"), f"client:\n  x509:\n    truststore: {pki_dir / 'ca.pem'}\n"
    )
    yield d
    d.stop()


@pytest.fixture(scope="module")
def good_server(pki_dir: Path) -> Iterator[GtlsServer]:
    s = GtlsServer(pki_dir, pki_dir / "server.pem", pki_dir / "server.key")
    yield s
    s.stop()


async def test_issue11_item14_peer_reason_phrase_is_escaped_in_the_log(
    pki_dir: Path, daemon: QuichsdProcess, good_server: GtlsServer
) -> None:
    """issue 11 item 14: a CONNECTION_CLOSE reason phrase with a newline (and other control
    characters) is logged escaped on the completion line; no forged line appears."""
    port = free_port()
    reason = f"bye\n{FORGED}\r\x1b[2J"
    server, _ = await aioquic_aborting_server(
        port,
        pki_dir / "server.pem",
        pki_dir / "server.key",
        ALERT_HANDSHAKE_FAILURE,
        reason,
        first_flight=False,  # no ServerHello: no race with a key install (item 17)
    )
    try:
        res = await via_connect(daemon, port, "server.test")
    finally:
        server.close()
    assert res.status == errno.EACCES, res
    log = daemon.wait_log("forged")
    lines = log.splitlines()
    assert not any(ln.startswith(FORGED) for ln in lines), log[-2000:]
    (line,) = [ln for ln in lines if "forged" in ln]
    assert line.startswith("quichsd[") and "socket-ops) done: status 13 EACCES" in line
    assert f"TLS alert 40 (handshake_failure): bye\\n{FORGED}\\r\\x1b[2J" in line, line
    assert "\x1b" not in log and "\r" not in log
    await canary(daemon, good_server.port)


@pytest.mark.parametrize(
    ("code", "status"),
    [(ALERT_HANDSHAKE_FAILURE, errno.EACCES), (NO_ERROR, errno.ECONNRESET)],
    ids=["alert", "no-error"],
)
async def test_issue11_item17_abort_after_serverhello_is_the_peers_close_via_daemon(
    pki_dir: Path, daemon: QuichsdProcess, good_server: GtlsServer, code: int, status: int
) -> None:
    """issue 11 item 17: a peer aborting right after its ServerHello gives the peer's close
    (EACCES for an alert, ECONNRESET otherwise) in every run, not EINVAL from the key
    installation the close raced (socket-ops path)."""
    port = free_port()
    server, _ = await aioquic_aborting_server(
        port, pki_dir / "server.pem", pki_dir / "server.key", code, "going away"
    )
    try:
        results = [await via_connect(daemon, port, "server.test") for _ in range(8)]
    finally:
        server.close()
    assert [r.status for r in results] == [status] * 8, [(r.status, r.error) for r in results]
    assert all("going away" in str(r.error) for r in results), results
    await canary(daemon, good_server.port)
