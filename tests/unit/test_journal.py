# SPDX-License-Identifier: GPL-2.0-or-later
"""quichsd.journal against a real journal socket (issue 13 items 9-11): a datagram socket
the test binds, whose datagrams are decoded with the journal's native protocol, and a
real stream for the ``<N>`` prefix form."""

from __future__ import annotations

import io
import logging
import os
import re
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from quichsd import journal

NOTICE = journal.NOTICE


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[tuple[socket.socket, logging.Logger]]:
    path = str(tmp_path / "journal.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    srv.bind(path)
    srv.settimeout(5)
    handler = journal.JournalHandler(path)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger(f"quichsd.test.journal.{id(srv)}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield srv, logger
    finally:
        logger.removeHandler(handler)
        handler.close()
        srv.close()


def received(srv: socket.socket) -> dict[str, bytes]:
    data = srv.recv(1 << 17)
    fields = journal.decode(data)
    names = [n for n, _ in fields]
    assert len(names) == len(set(names)), names
    return dict(fields)


@pytest.mark.parametrize(
    ("level", "prio"),
    [
        (logging.DEBUG, b"7"),
        (logging.INFO, b"6"),
        (NOTICE, b"5"),
        (logging.WARNING, b"4"),
        (logging.ERROR, b"3"),
        (logging.CRITICAL, b"2"),
    ],
)
def test_priorities_follow_syslog(
    sink: tuple[socket.socket, logging.Logger], level: int, prio: bytes
) -> None:
    srv, logger = sink
    logger.log(level, "hello %s", "world")
    f = received(srv)
    assert f["MESSAGE"] == b"hello world" and f["PRIORITY"] == prio
    assert f["SYSLOG_IDENTIFIER"] == b"quichsd"
    assert set(f) == {
        "MESSAGE",
        "PRIORITY",
        "SYSLOG_IDENTIFIER",
        "CODE_FILE",
        "CODE_LINE",
        "CODE_FUNC",
    }
    assert f["CODE_FUNC"] == b"test_priorities_follow_syslog"


def test_message_id_and_structured_fields(sink: tuple[socket.socket, logging.Logger]) -> None:
    srv, logger = sink
    logger.warning(
        "handshake failed",
        extra={
            "event": "handshake_failed",
            "journal": {
                "QUICHSD_PEER": "127.0.0.1:4433",
                "QUICHSD_STATUS": 13,
                "QUICHSD_ALPN": None,
                "bad name": "x",
            },
        },
    )
    f = received(srv)
    assert f["MESSAGE_ID"] == journal.MESSAGE_IDS["handshake_failed"].encode()
    assert f["QUICHSD_PEER"] == b"127.0.0.1:4433" and f["QUICHSD_STATUS"] == b"13"
    # None is left out; a name the protocol forbids is dropped, never sent malformed
    assert "QUICHSD_ALPN" not in f and all(n == n.upper() for n in f)


def test_multiline_message_is_a_binary_field(sink: tuple[socket.socket, logging.Logger]) -> None:
    srv, logger = sink
    logger.info("line one\nline two")
    raw = srv.recv(1 << 17)
    assert b"MESSAGE\n" + struct.pack("<Q", 17) + b"line one\nline two\n" in raw
    assert dict(journal.decode(raw))["MESSAGE"] == b"line one\nline two"


def test_oversized_message_is_cut_not_lost(sink: tuple[socket.socket, logging.Logger]) -> None:
    srv, logger = sink
    logger.info("x" * (200 * 1024))
    f = received(srv)
    assert f["MESSAGE"].endswith(b" [truncated]") and len(f["MESSAGE"]) < journal.MAX_DATAGRAM


def test_message_ids_are_distinct_128_bit_hex() -> None:
    ids = list(journal.MESSAGE_IDS.values())
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def test_prefix_handler_marks_every_line() -> None:
    out = io.StringIO()
    h = journal.PrefixHandler(out)
    h.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("quichsd.test.prefix")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logger.addHandler(h)
    try:
        logger.log(NOTICE, "a\nb")
        logger.warning("w")
    finally:
        logger.removeHandler(h)
    assert out.getvalue() == "<5>a\n<5>b\n<4>w\n"


def test_stream_is_journal_compares_dev_and_inode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open(tmp_path / "f", "w") as f:
        st = os.fstat(f.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        assert journal.stream_is_journal(f.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino + 1}")
        assert not journal.stream_is_journal(f.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", "junk")
        assert not journal.stream_is_journal(f.fileno())


def test_every_message_id_is_documented_in_quichsd_8() -> None:
    """quichsd(8) JOURNAL lists each MESSAGE_ID (users filter on them) and nothing else."""
    page = (Path(__file__).resolve().parents[2] / "docs/man/quichsd.8").read_text()
    section = page.split(".SH JOURNAL\n", 1)[1].split("\n.SH ", 1)[0]
    documented = set(re.findall(r"^\.B ([0-9a-f]{32})$", section, re.M))
    assert documented == set(journal.MESSAGE_IDS.values())
