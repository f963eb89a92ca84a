# SPDX-License-Identifier: GPL-2.0-or-later
"""Issue 13 items 9-11: the real daemon logging to a journal socket and to journald's
stream, decoded with the journal's native protocol.

The test binds a datagram socket and, in a private mount namespace for the daemon only,
bind-mounts its directory over /run/systemd/journal, so the daemon finds "the journal
socket" exactly where journald keeps it and sends to ours (the host's journal, if any, is
untouched). Handshakes are real: socket-ops through the daemon to gtlsserver.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pki import write_peer_dir
from quichsd_proc import QuichsdProcess, via_connect
from userspace_peers import GtlsServer

from quichsd.journal import MESSAGE_IDS, decode

pytestmark = [
    pytest.mark.peer,
    pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1)"),
]

JOURNAL_DIR = "/run/systemd/journal"
#: the fields a quichsd message may carry (besides QUICHSD_*): nothing lowercase, no junk
STANDARD = {"MESSAGE", "PRIORITY", "SYSLOG_IDENTIFIER", "CODE_FILE", "CODE_LINE", "CODE_FUNC"}


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_peer_dir(tmp_path_factory.mktemp("pkij"))


@pytest.fixture(scope="module")
def server(pki_dir: Path) -> Iterator[GtlsServer]:
    s = GtlsServer(pki_dir, pki_dir / "server.pem", pki_dir / "server.key")
    yield s
    s.stop()


def in_namespace(mount: str) -> tuple[str, ...]:
    """A command prefix: a private mount namespace where ``mount`` (a shell command) has
    been run, then the daemon exec'd (same pid, so SIGTERM reaches it)."""
    os.makedirs(JOURNAL_DIR, exist_ok=True)
    return ("unshare", "-m", "--propagation", "private", "sh", "-c", f'{mount} && exec "$@"', "sh")


def mkdir(d: Path) -> Path:
    d.mkdir()
    return d


def config(pki: Path) -> str:
    return f"log:\n  level: info\nclient:\n  x509:\n    truststore: {pki / 'ca.pem'}\n"


class Journal:
    """The test's journal socket: datagrams decoded as native-protocol records."""

    def __init__(self, d: Path) -> None:
        self.dir = d
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(d / "socket"))
        self.sock.settimeout(0.2)
        self.records: list[dict[str, str]] = []
        self.raw: list[list[tuple[str, bytes]]] = []

    def wait(self, pred: str, timeout: float = 15) -> dict[str, str]:
        """The first record whose MESSAGE contains ``pred``."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for r in self.records:
                if pred in r.get("MESSAGE", ""):
                    return r
            try:
                data = self.sock.recv(1 << 16)
            except TimeoutError:
                continue
            fields = decode(data)
            self.raw.append(fields)
            self.records.append({k: v.decode() for k, v in fields})
        raise AssertionError(f"no journal record with {pred!r}: {self.records}")


async def test_journal_priorities_message_ids_and_fields(
    pki_dir: Path, server: GtlsServer, tmp_path: Path
) -> None:
    jdir = tmp_path / "journal"
    jdir.mkdir()
    journal = Journal(jdir)
    d = QuichsdProcess(
        mkdir(tmp_path / "d"),
        config(pki_dir),
        wrap=in_namespace(f"mount --bind {jdir} {JOURNAL_DIR}"),
        stderr_only=False,
    )
    try:
        started = journal.wait("running:")
        assert started["PRIORITY"] == "5", started  # notice, not warning
        assert started["MESSAGE_ID"] == MESSAGE_IDS["started"]
        assert started["SYSLOG_IDENTIFIER"] == "quichsd" and started["QUICHSD_VERSION"]
        ok = await via_connect(d, server.port, "server.test")
        bad = await via_connect(d, server.port, "wrong.test")
        assert ok.status == 0 and bad.status == errno.EACCES, (ok, bad)
        good = journal.wait("status 0 OK")
        failed = journal.wait("status 13 EACCES")
        d.stop()
        stopping = journal.wait("stopping")
    finally:
        if d.proc.poll() is None:
            d.stop()
        journal.sock.close()
    assert good["PRIORITY"] == "6" and good["MESSAGE_ID"] == MESSAGE_IDS["handshake_succeeded"]
    assert failed["PRIORITY"] == "4" and failed["MESSAGE_ID"] == MESSAGE_IDS["handshake_failed"]
    assert stopping["PRIORITY"] == "5" and stopping["MESSAGE_ID"] == MESSAGE_IDS["stopping"]
    for rec, status in ((good, 0), (failed, errno.EACCES)):
        assert rec["QUICHSD_STATUS"] == str(status)
        assert rec["QUICHSD_ERRNO"] == ("OK" if status == 0 else "EACCES")
        assert rec["QUICHSD_ROLE"] == "client" and rec["QUICHSD_AUTH"] == "x509"
        assert rec["QUICHSD_SOURCE"] == "socket-ops" and rec["QUICHSD_TRANSPORT"] == "quic"
        assert re.fullmatch(r"pid \d+ uid 0 gid 0", rec["QUICHSD_PEER"]), rec
        assert int(rec["QUICHSD_DURATION_MS"]) >= 0
    assert good["QUICHSD_PEER_NAME"] == "server.test"
    assert failed["QUICHSD_PEER_NAME"] == "wrong.test"
    # what was negotiated, as the peer saw it: gtlsserver's default suite and group
    assert good["QUICHSD_CIPHER"] == "TLS_AES_128_GCM_SHA256", good
    assert good["QUICHSD_GROUP"] == "X25519" and good["QUICHSD_ALPN"] == "h3"
    assert good["QUICHSD_RESUMED"] == "0"
    assert "QUICHSD_CIPHER" not in failed  # nothing was negotiated
    for fields in journal.raw:
        names = {k for k, _ in fields}
        extra = names - STANDARD - {"MESSAGE_ID"}
        assert all(n.startswith("QUICHSD_") for n in extra), names
        assert len(names) == len(fields), fields  # no field twice
        assert all(n == n.upper() for n in names), names


def test_journal_stream_lines_carry_priority_prefixes(tmp_path: Path) -> None:
    """No journal socket, stderr is the stream of JOURNAL_STREAM: ``<N>`` prefixes, no
    ``quichsd[pid]:``; without the variable, the plain form."""
    d = QuichsdProcess(
        mkdir(tmp_path / "d"),
        "log:\n  level: info\n",
        wrap=in_namespace(f"mount -t tmpfs tmpfs {JOURNAL_DIR}"),
        stderr_only=False,
        journal_stream=True,
    )
    try:
        text = d.wait_log("running:")
        d.proc.send_signal(signal.SIGHUP)
        text = d.wait_log("configuration reloaded")
    finally:
        d.stop()
    lines = [x for x in d.log().splitlines() if x]
    assert lines, text
    assert all(re.match(r"<[0-7]>quichsd[.\w]*: ", x) for x in lines), lines
    assert not any("quichsd[" in x for x in lines), lines
    assert any(x.startswith("<5>quichsd: quichsd ") and "running:" in x for x in lines), lines
    assert any(x.startswith("<5>quichsd: configuration reloaded from") for x in lines), lines
    plain = QuichsdProcess(
        mkdir(tmp_path / "p"),
        "log:\n  level: info\n",
        wrap=in_namespace(f"mount -t tmpfs tmpfs {JOURNAL_DIR}"),
        stderr_only=False,
    )
    try:
        plain.wait_log("running:")
    finally:
        plain.stop()
    assert re.search(r"^quichsd\[\d+\]: NOTICE quichsd: quichsd .* running:", plain.log(), re.M)
