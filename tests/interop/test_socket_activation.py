# SPDX-License-Identifier: GPL-2.0-or-later
"""Issue 13 item 6: ``systemd/quichsd.socket`` and a real LISTEN_FDS hand-over.

systemd's own ``systemd-socket-activate`` binds a SOCK_SEQPACKET socket, as the shipped
``quichsd.socket`` has systemd do, and starts the daemon on the first connection with the
socket as fd 3 (LISTEN_FDS=1, LISTEN_PID=its pid). The daemon must serve it (a socket-ops
handshake to gtlsserver) without binding its configured ``unix_socket.path``.
"""

from __future__ import annotations

import configparser
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pki import write_peer_dir
from quichsd_proc import canary
from userspace_peers import GtlsServer

pytestmark = pytest.mark.peer
ROOT = Path(__file__).resolve().parents[2]
ACTIVATE = shutil.which("systemd-socket-activate")


def test_shipped_socket_unit_matches_the_daemon() -> None:
    """The unit listens where the shipped config's unix_socket.path points, with the
    protocol the daemon requires of fd 3, and starts quichsd.service."""
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(ROOT / "systemd" / "quichsd.socket")
    sock = unit["Socket"]
    from quichsd.config import Settings

    assert sock["ListenSequentialPacket"] == Settings().unix_socket.path
    assert sock["Service"] == "quichsd.service"
    assert int(sock["SocketMode"], 8) & 0o007 == 0  # nobody else
    assert "sockets.target" in unit["Install"]["WantedBy"]


class _Daemon:
    def __init__(self, sock: Path) -> None:
        self.sock = sock


@pytest.mark.skipif(ACTIVATE is None, reason="systemd-socket-activate (package systemd) absent")
async def test_listen_fds_hand_over_from_systemd_socket_activate(tmp_path: Path) -> None:
    assert ACTIVATE is not None
    (tmp_path / "pki").mkdir()
    pki = write_peer_dir(tmp_path / "pki")
    server = GtlsServer(pki, pki / "server.pem", pki / "server.key")
    activated = tmp_path / "activated.sock"
    configured = tmp_path / "configured" / "quichsd.sock"
    config = tmp_path / "config.yaml"
    config.write_text(
        f"client:\n  x509:\n    truststore: {pki / 'ca.pem'}\n"
        f"unix_socket:\n  path: {configured}\n  allowed_uids: [{os.getuid()}]\n"
    )
    log = tmp_path / "daemon.log"
    quichsd = str(Path(sys.executable).parent / "quichsd")
    with log.open("w") as out:
        proc = subprocess.Popen(
            [ACTIVATE, "--seqpacket", "-l", str(activated), "-E", "PATH", quichsd, "-s", "-c",
             str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        t0 = time.monotonic()
        while not activated.exists() and time.monotonic() - t0 < 10:
            time.sleep(0.05)
        assert activated.exists(), log.read_text()
        # the first connection starts the daemon, which answers it from fd 3
        await canary(_Daemon(activated), server.port)  # type: ignore[arg-type]
        await canary(_Daemon(activated), server.port)  # type: ignore[arg-type]
        text = log.read_text()
        assert (
            "running: kernel handshake family not available; unix service on socket from systemd"
            in text
        ), text
        assert not configured.exists(), "the daemon bound unix_socket.path instead of fd 3"
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(20)
        server.stop()
    assert rc == 0, log.read_text()
