# SPDX-License-Identifier: GPL-2.0-or-later
"""The real `quichsd` process: CLI contract, sd_notify, SIGHUP reload, SIGTERM exit.

On this kernel the netlink family is absent, so these check the life cycle around it:
the daemon must say so once, stay up, notify systemd, reload and stop cleanly.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent / "quichsd"
REPO = Path(__file__).resolve().parents[2]


def write_config(path: Path, body: str) -> Path:
    path.write_text(body)
    return path


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(tmp_path / "notify.sock"))
    s.settimeout(30)
    yield s
    s.close()


def start(config: Path, notify: Path | None = None) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env.pop("JOURNAL_STREAM", None)
    if notify is not None:
        env["NOTIFY_SOCKET"] = str(notify)
    return subprocess.Popen(
        [str(BIN), "-s", "-c", str(config)],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def read_until(proc: subprocess.Popen[str], needle: str, timeout: float = 30) -> str:
    assert proc.stderr is not None
    seen = ""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        line = proc.stderr.readline()
        if not line:
            break
        seen += line
        if needle in line:
            return seen
    raise AssertionError(f"{needle!r} not logged; got:\n{seen}")


def test_version_and_check_of_the_shipped_config() -> None:
    out = subprocess.run([str(BIN), "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("quichsd ")
    chk = subprocess.run(
        [str(BIN), "--check", "-c", str(REPO / "etc/quichsd/config.yaml")],
        capture_output=True,
        text=True,
    )
    assert chk.returncode == 0 and chk.stderr == ""


def test_check_reports_path_and_line(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "bad.yaml", "log:\n  level: loud\n")
    chk = subprocess.run([str(BIN), "--check", "-c", str(cfg)], capture_output=True, text=True)
    assert chk.returncode == 1
    assert chk.stderr.startswith(f"{cfg}:2: log.level")


def test_check_reports_missing_certificate_file(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path / "c.yaml",
        f"server:\n  x509:\n    certificate: {tmp_path}/none.pem\n"
        f"    private_key: {tmp_path}/none.key\n",
    )
    chk = subprocess.run([str(BIN), "--check", "-c", str(cfg)], capture_output=True, text=True)
    assert chk.returncode == 1
    assert f"{tmp_path}/none.pem" in chk.stderr


def test_missing_family_ready_reload_and_sigterm(
    tmp_path: Path, notify_socket: socket.socket
) -> None:
    cfg = write_config(
        tmp_path / "q.yaml",
        f"unix_socket:\n  path: {tmp_path}/q.sock\n",
    )
    proc = start(cfg, tmp_path / "notify.sock")
    try:
        log = read_until(proc, "running:")
        assert log.count("kernel handshake netlink family 'handshake' is not available") == 1
        msg = notify_socket.recv(4096).decode()
        assert msg.startswith("READY=1\nSTATUS=")
        # a broken file on SIGHUP: refused with its PATH:LINE, old config kept, still up
        cfg.write_text("handshake:\n  default_timeout_ms: -5\n")
        proc.send_signal(signal.SIGHUP)
        refused = read_until(proc, "reload refused")
        assert f"{cfg}:2: handshake.default_timeout_ms" in refused
        assert proc.poll() is None
        # a good file on SIGHUP: reloaded, READY again
        cfg.write_text(f"log:\n  level: debug\nunix_socket:\n  path: {tmp_path}/q.sock\n")
        proc.send_signal(signal.SIGHUP)
        read_until(proc, "configuration reloaded")
        while "reloaded" not in (m := notify_socket.recv(4096).decode()):
            pass
        assert m.startswith("READY=1")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        while "STOPPING=1" not in (m := notify_socket.recv(4096).decode()):
            pass
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sigint_also_exits_zero(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "q.yaml", f"unix_socket:\n  path: {tmp_path}/q.sock\n")
    proc = start(cfg)
    try:
        read_until(proc, "running:")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
