# SPDX-License-Identifier: GPL-2.0-or-later
"""Issue 11 (security and reliability hardening), items 6, 8, 9, 10 and 16, against the
real ``quichsd`` process; each ends with the daemon still serving canary handshakes
(``quichsd-probe --via`` against gtlsserver / gtlsclient). Item 7 is in test_workers.py."""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from daemon_helpers import BIN, Daemon, assert_canaries, canary_serve, make_daemon_dir, pki_config
from pki import issue, make_pki

from quichsd import cli

pytestmark = pytest.mark.peer


def check(cfg: Path, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "quichsd"), "--check", "-c", str(cfg)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def line_of(cfg: Path, key: str) -> int:
    """1-based line of ``key:`` in a config file (for the expected PATH:LINE)."""
    lines = cfg.read_text().splitlines()
    return next(i for i, text in enumerate(lines, 1) if text.strip().startswith(key + ":"))


# --- item 6: signals -----------------------------------------------------------------------


def test_issue_11_item_6_no_signal_default_terminates_the_daemon(tmp_path: Path) -> None:
    """issue 11 item 6: SIGUSR1 reloads like SIGHUP; SIGUSR2 and the other signals another
    process may send are logged and ignored; SIGQUIT stops cleanly (socket file removed);
    a handshake waiting in the daemon across the signals still completes."""
    cfg = make_daemon_dir(tmp_path)
    daemon = Daemon(tmp_path, cfg)
    try:
        daemon.send(signal.SIGUSR1)
        daemon.wait_log(f"configuration reloaded from {cfg}")
        others = [
            signal.SIGUSR2, signal.SIGALRM, signal.SIGVTALRM, signal.SIGPROF, signal.SIGIO,
            signal.SIGPWR, signal.SIGXCPU, signal.SIGXFSZ, signal.SIGTSTP, signal.SIGTTIN,
            signal.SIGTTOU, signal.SIGRTMIN, signal.SIGRTMIN + 5, signal.SIGRTMAX,
        ]  # fmt: skip
        for sig in others:
            daemon.send(sig)
            time.sleep(0.02)
        text = daemon.wait_log("SIGRTMAX ignored")
        for name in ("SIGUSR2", "SIGALRM", "SIGIO", "SIGXCPU", "SIGTSTP", "SIGRTMIN", "SIGRTMIN+5"):
            assert f"{name} ignored" in text, text
        assert daemon.proc.poll() is None
        with open(f"/proc/{daemon.proc.pid}/stat") as f:
            assert f.read().split(") ")[1][0] in "RS"  # not stopped by SIGTSTP/SIGTTIN
        assert_canaries(tmp_path, daemon.sock)
        daemon.send(signal.SIGUSR2)  # while a handshake is in flight
        res, client = canary_serve(tmp_path, daemon.sock)
        assert res["ok"] is True and "QUIC handshake has completed" in client
    finally:
        rc = daemon.stop(signal.SIGQUIT)
    assert rc == 0, daemon.text()
    assert "stopping" in daemon.text()
    assert not daemon.sock.exists()  # removed, as on SIGTERM


# --- item 8: a private key that does not match its certificate -------------------------------


def test_issue_11_item_8_key_mismatch_refused_at_check_start_and_reload(tmp_path: Path) -> None:
    """issue 11 item 8: --check, start-up and SIGHUP load the credentials as a handshake
    does and refuse a key that does not match its certificate, with PATH:LINE: of the key
    setting naming both files; on the refused reload the old key stays in force (gtlsclient
    still completes a handshake with the daemon as server)."""
    cfg = make_daemon_dir(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text(pki_config(tmp_path, key="client.key"))
    want = (
        f"{bad}:{line_of(bad, 'private_key')}: server.x509.private_key: {tmp_path}/client.key "
        f"does not match the certificate {tmp_path}/server.pem"
    )
    chk = check(bad)
    assert chk.returncode == 1 and chk.stderr.startswith(want), chk.stderr
    refused = Daemon(tmp_path, bad, wait=False)
    assert refused.proc.wait(20) == 1
    assert want in refused.text()

    daemon = Daemon(tmp_path, cfg)
    try:
        res, client = canary_serve(tmp_path, daemon.sock)
        assert res["ok"] is True, res
        cfg.write_text(bad.read_text())
        daemon.send(signal.SIGHUP)
        text = daemon.wait_log("reload refused")
        assert f"reload refused: {want.replace(str(bad), str(cfg))}" in text, text
        assert_canaries(tmp_path, daemon.sock)  # the old key pair is still in force
    finally:
        assert daemon.stop() == 0


def test_issue_11_item_8_expired_and_not_yet_valid_certificates_warned(tmp_path: Path) -> None:
    """issue 11 item 8: a certificate that has expired or is not yet valid is warned about
    at --check (exit 0), start-up and reload; the daemon keeps serving."""
    cfg = make_daemon_dir(tmp_path)
    pki = make_pki()
    now = dt.datetime.now(dt.UTC)
    future = issue("server.test", pki.ca, not_before=now + dt.timedelta(days=2))
    (tmp_path / "future.pem").write_bytes(future.cert_pem)
    (tmp_path / "future.key").write_bytes(future.key_pem)
    (tmp_path / "future.key").chmod(0o600)
    expired = tmp_path / "expired.yaml"
    expired.write_text(pki_config(tmp_path, cert="expired.pem", key="expired.key"))
    chk = check(expired)
    assert chk.returncode == 0, chk.stderr
    assert f"{tmp_path}/expired.pem: warning: server certificate (CN=server.test) expired on" in (
        chk.stderr
    )
    daemon = Daemon(tmp_path, expired)
    try:
        assert "expired.pem: warning: server certificate (CN=server.test) expired" in daemon.text()
        expired.write_text(pki_config(tmp_path, cert="future.pem", key="future.key"))
        daemon.send(signal.SIGHUP)
        text = daemon.wait_log("configuration reloaded")
        assert "future.pem: warning: server certificate (CN=server.test) is not valid before" in (
            text
        )
        expired.write_text(cfg.read_text())
        daemon.send(signal.SIGHUP)
        daemon.wait_log("configuration reloaded", count=2)
        assert_canaries(tmp_path, daemon.sock)
    finally:
        assert daemon.stop() == 0


# --- item 9: FIFOs and other non-regular files ---------------------------------------------


def test_issue_11_item_9_fifo_config_key_or_certificate_refused_at_once(tmp_path: Path) -> None:
    """issue 11 item 9: a FIFO as the config, key or certificate: --check says so at once
    (it used to hang on open), and a SIGHUP to a FIFO is refused without freezing the
    event loop; the daemon keeps serving."""
    cfg = make_daemon_dir(tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    chk = check(fifo)
    assert chk.returncode == 1
    assert chk.stderr == f"{fifo}: cannot read: a FIFO, not a regular file\n"
    for cert, key in (("fifo", "server.key"), ("server.pem", "fifo")):
        named = tmp_path / "named.yaml"
        named.write_text(pki_config(tmp_path, cert=cert, key=key))
        chk = check(named)
        assert chk.returncode == 1 and f"{fifo}: a FIFO, not a regular file" in chk.stderr, chk
    chk = check(Path("/dev/zero"))
    assert chk.returncode == 1 and "a character device, not a regular file" in chk.stderr

    daemon = Daemon(tmp_path, cfg)
    try:
        good = cfg.read_text()
        cfg.unlink()
        os.mkfifo(cfg)  # the config itself becomes a FIFO
        daemon.send(signal.SIGHUP)
        text = daemon.wait_log("reload refused", timeout=10)
        assert f"reload refused: {cfg}: cannot read: a FIFO, not a regular file" in text
        cfg.unlink()
        cfg.write_text(pki_config(tmp_path, key="fifo"))  # ...then the key it names
        daemon.send(signal.SIGHUP)
        text = daemon.wait_log("reload refused", timeout=10, count=2)
        assert f"reload refused: {fifo}: a FIFO, not a regular file" in text
        assert_canaries(tmp_path, daemon.sock)
        cfg.write_text(good)
    finally:
        assert daemon.stop() == 0


# --- item 10: --check with no file -------------------------------------------------------------


def test_issue_11_item_10_check_without_a_config_file_fails_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """issue 11 item 10: ``quichsd --check`` when the default config file does not exist
    validated nothing: it says so and exits 1 (it printed nothing and exited 0)."""
    missing = tmp_path / "etc" / "config.yaml"
    monkeypatch.setattr(cli, "DEFAULT_CONFIG", str(missing))
    assert cli.main(["--check"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{missing}: not found: nothing was validated")
    missing.parent.mkdir()
    missing.write_text("log:\n  level: info\n")
    assert cli.main(["--check"]) == 0  # the same path, once it exists, is validated
    assert capsys.readouterr().err == ""
    chk = check(tmp_path / "none.yaml")  # -c with no file: an error too, as before
    assert chk.returncode == 1 and "none.yaml: cannot read: No such file" in chk.stderr


# --- item 16: a live listener with a full backlog on the socket path ---------------------------


def test_issue_11_item_16_full_backlog_listener_does_not_hang_startup(tmp_path: Path) -> None:
    """issue 11 item 16: another process listens on unix_socket.path and never accepts
    (its backlog full): the stale-socket probe is non-blocking, so the daemon reports it
    and reaches READY at once and leaves that socket alone; once it is stale, the next
    start replaces it and serves."""
    cfg = make_daemon_dir(tmp_path)
    path = tmp_path / "run" / "quichsd.sock"
    path.parent.mkdir(mode=0o750)
    squatter = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    squatter.bind(str(path))
    squatter.listen(0)
    queued = []
    while True:  # fill its backlog
        c = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_NONBLOCK)
        try:
            c.connect(str(path))
        except BlockingIOError:
            c.close()
            break
        queued.append(c)
    try:
        t0 = time.monotonic()
        daemon = Daemon(tmp_path, cfg, wait=False)
        try:
            text = daemon.wait_log("running:", timeout=15)
            assert time.monotonic() - t0 < 10
            assert f"{path}: another process is listening on it" in text, text
        finally:
            assert daemon.stop() == 0
        assert path.exists()  # the other process's socket file is not removed
    finally:
        for c in queued:
            c.close()
        squatter.close()
    daemon = Daemon(tmp_path, cfg)  # now a stale socket file: replaced
    try:
        assert_canaries(tmp_path, daemon.sock)
    finally:
        assert daemon.stop() == 0
