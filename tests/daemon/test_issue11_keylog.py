# SPDX-License-Identifier: GPL-2.0-or-later
"""Issue 11 items 4 and 5: key logging is opt-in by config only; GnuTLS's key-printing
debug level needs it. A real daemon, with handshakes run for a socket-ops client against
ngtcp2's gtlsserver on loopback."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pki import write_peer_dir
from quichsd_proc import QuichsdProcess, canary

sys.path.insert(0, str(Path(__file__).parents[1] / "interop"))
from userspace_peers import GtlsServer  # noqa: E402

pytestmark = pytest.mark.peer

BIN = Path(sys.executable).parent / "quichsd"
NSS_LINE = re.compile(r"[A-Z_0-9]+ [0-9a-f]{64} [0-9a-f]{64,96}")


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_peer_dir(tmp_path_factory.mktemp("pki11k"))


@pytest.fixture(scope="module")
def server(pki_dir: Path) -> Iterator[GtlsServer]:
    s = GtlsServer(pki_dir, pki_dir / "server.pem", pki_dir / "server.key")
    yield s
    s.stop()


def client_config(pki: Path, log: str = "") -> str:
    return f"{log}client:\n  x509:\n    truststore: {pki / 'ca.pem'}\n"


async def test_issue11_item4_sslkeylogfile_in_the_environment_is_ignored(
    pki_dir: Path, server: GtlsServer, tmp_path: Path
) -> None:
    """issue 11 item 4: SSLKEYLOGFILE in the daemon's environment writes nothing (GnuTLS
    used to append every traffic secret to it, mode 0644, silently); a warning says so."""
    env_file = tmp_path / "env-keys.log"
    d = QuichsdProcess(tmp_path, client_config(pki_dir), env={"SSLKEYLOGFILE": str(env_file)})
    try:
        await canary(d, server.port)
    finally:
        d.stop()
    assert not env_file.exists(), (oct(env_file.stat().st_mode), env_file.read_text())
    assert "SSLKEYLOGFILE in the environment is ignored; use log.keylog_file" in d.log()
    assert "key logging is on" not in d.log()


async def test_issue11_item4_keylog_file_by_config_is_0600_and_warned_about(
    pki_dir: Path, server: GtlsServer, tmp_path: Path
) -> None:
    """issue 11 item 4: log.keylog_file turns key logging on: NSS key log lines in a file of
    mode 0600 (an existing wider one is narrowed), a warning at start and on each reload."""
    keys = tmp_path / "keys.log"
    keys.write_text("")
    keys.chmod(0o644)
    d = QuichsdProcess(tmp_path, client_config(pki_dir, f"log:\n  keylog_file: {keys}\n"))
    try:
        await canary(d, server.port)
        d.proc.send_signal(signal.SIGHUP)
        d.wait_log("configuration reloaded")
        await canary(d, server.port)
        log = d.wait_log("configuration reloaded")
    finally:
        d.stop()
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    lines = keys.read_text().splitlines()
    labels = [ln.split()[0] for ln in lines]
    assert all(NSS_LINE.fullmatch(ln) for ln in lines), lines
    for label in ("CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_TRAFFIC_SECRET_0"):
        assert labels.count(label) == 2, labels  # one per handshake
    warning = f"key logging is on (log.keylog_file): the TLS secrets of every handshake are written to {keys}"  # noqa: E501
    assert log.count(warning) == 2, log  # at start, and after the reload
    assert all(ln.split()[2] not in log for ln in lines)  # no secret in the log


def test_issue11_item4_keylog_file_symlink_is_refused(pki_dir: Path, tmp_path: Path) -> None:
    """issue 11 item 4: the key log file is opened O_NOFOLLOW: a symlink stops the start."""
    target = tmp_path / "elsewhere"
    (tmp_path / "keys.log").symlink_to(target)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(client_config(pki_dir, f"log:\n  keylog_file: {tmp_path / 'keys.log'}\n"))
    p = subprocess.run(
        [str(BIN), "-s", "-c", str(cfg)], capture_output=True, text=True, timeout=30,
        env={k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"},
    )  # fmt: skip
    assert p.returncode == 1, p.stderr
    assert f"{tmp_path / 'keys.log'}: cannot open log.keylog_file" in p.stderr
    assert not target.exists()


def test_issue11_item5_gnutls_level_9_is_refused_without_key_logging(tmp_path: Path) -> None:
    """issue 11 item 5: log.gnutls_level 9 makes GnuTLS print record keys and IVs; the
    config refuses it (PATH:LINE) unless key logging is explicitly on."""
    cfg = tmp_path / "config.yaml"
    cfg.write_text("log:\n  gnutls_level: 9\n")
    p = subprocess.run([str(BIN), "--check", "-c", str(cfg)], capture_output=True, text=True)
    assert p.returncode == 1
    assert p.stderr.startswith(f"{cfg}:2: log.gnutls_level: 9 makes GnuTLS log TLS record keys")
    cfg.write_text(f"log:\n  gnutls_level: 9\n  keylog_file: {tmp_path / 'keys.log'}\n")
    p = subprocess.run([str(BIN), "--check", "-c", str(cfg)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    cfg.write_text("log:\n  gnutls_level: 8\n")
    p = subprocess.run([str(BIN), "--check", "-c", str(cfg)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
