# SPDX-License-Identifier: GPL-2.0-or-later
"""Logging to the systemd journal: its native protocol, and the stderr form journald reads.

Two handlers, chosen by :func:`quichsd.log.setup`:

- :class:`JournalHandler` sends each record as one datagram of the journal's native
  protocol (``systemd.journal-fields(7)``, "Native Journal Protocol") to
  ``/run/systemd/journal/socket``: ``MESSAGE``, ``PRIORITY`` (syslog numbering: notice is
  5, warning 4), ``SYSLOG_IDENTIFIER=quichsd``, ``CODE_FILE``/``CODE_LINE``/``CODE_FUNC``,
  ``MESSAGE_ID`` for the event kinds in :data:`MESSAGE_IDS`, and the record's structured
  fields (``QUICHSD_*``, passed as ``extra={"journal": {...}}``). No other fields: nothing
  lowercase, nothing per-thread.
- :class:`PrefixHandler` writes ``<N>message`` lines to stderr, the form journald parses on
  a stream it gave the service (``JOURNAL_STREAM``, ``SyslogLevelPrefix=``), so the
  priority survives without the journal socket and no ``quichsd[pid]:`` prefix is
  repeated (journald adds the identifier and pid itself).

Neither needs systemd-python.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import struct
import sys
from collections.abc import Mapping
from typing import TextIO

JOURNAL_SOCKET = "/run/systemd/journal/socket"
NOTICE = 25

#: Python level -> syslog priority (``PRIORITY=`` and the ``<N>`` prefix)
_PRIORITIES = ((logging.ERROR + 10, 2), (logging.ERROR, 3), (logging.WARNING, 4), (NOTICE, 5))

#: one stable MESSAGE_ID per event kind (``journalctl MESSAGE_ID=...``), documented in
#: quichsd(8); made once with ``journalctl --new-id128``-style random 128-bit ids
MESSAGE_IDS: Mapping[str, str] = {
    "started": "5b1b0d2a4c8e4f6f9d2a7c3e1f0b8a61",
    "handshake_succeeded": "8f3c2e7a1d6b4c9e8a0f5d2b7c1e4a93",
    "handshake_failed": "c6d1a9e4f27b4e8d9c3a0b5f6e2d7184",
    "reload": "2e9f7c1b5a3d4e6f8b0c9d1a2e3f4b75",
    "reload_refused": "7a4d2c9e1b6f4a3e8d5c0b9f2e1a6d47",
    "stopping": "d84b1f6e3c2a4d9b8e7f0a1c5d6e2b39",
}

_FIELD_NAME = re.compile(r"[A-Z0-9][A-Z0-9_]*")
#: a datagram larger than this is not sent whole (journald's limit is larger; the
#: socket's send buffer is the real bound): MESSAGE is cut and the cut is marked
MAX_DATAGRAM = 48 * 1024


def priority(levelno: int) -> int:
    """The syslog priority of a Python log level."""
    for threshold, prio in _PRIORITIES:
        if levelno >= threshold:
            return prio
    return 6 if levelno >= logging.INFO else 7


def _field(name: str, value: str | bytes) -> bytes:
    data = value.encode("utf-8", "replace") if isinstance(value, str) else value
    key = name.encode("ascii")
    if b"\n" in data:
        return key + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
    return key + b"=" + data + b"\n"


def encode(fields: Mapping[str, str | bytes]) -> bytes:
    """One native-protocol datagram; raises ValueError for a bad field name."""
    out = bytearray()
    for name, value in fields.items():
        if not _FIELD_NAME.fullmatch(name):
            raise ValueError(f"invalid journal field name {name!r}")
        out += _field(name, value)
    return bytes(out)


def decode(data: bytes) -> list[tuple[str, bytes]]:
    """The fields of a native-protocol datagram, in order (for tests and tools)."""
    fields: list[tuple[str, bytes]] = []
    i = 0
    while i < len(data):
        nl = data.index(b"\n", i)
        line = data[i:nl]
        if b"=" in line:
            name, _, value = line.partition(b"=")
            fields.append((name.decode("ascii"), value))
            i = nl + 1
        else:
            (size,) = struct.unpack("<Q", data[nl + 1 : nl + 9])
            start = nl + 9
            fields.append((line.decode("ascii"), data[start : start + size]))
            if data[start + size : start + size + 1] != b"\n":
                raise ValueError("binary field not followed by a newline")
            i = start + size + 1
    return fields


def record_fields(record: logging.LogRecord, message: str) -> dict[str, str]:
    """The journal fields of one record."""
    fields = {
        "MESSAGE": message,
        "PRIORITY": str(priority(record.levelno)),
        "SYSLOG_IDENTIFIER": "quichsd",
        "CODE_FILE": record.pathname,
        "CODE_LINE": str(record.lineno),
        "CODE_FUNC": record.funcName,
    }
    kind = getattr(record, "event", None)
    if isinstance(kind, str) and kind in MESSAGE_IDS:
        fields["MESSAGE_ID"] = MESSAGE_IDS[kind]
    extra = getattr(record, "journal", None)
    if isinstance(extra, Mapping):
        for name, value in extra.items():
            if value is None:
                continue
            if not isinstance(name, str) or not _FIELD_NAME.fullmatch(name):
                continue  # never a malformed datagram from a caller's typo
            fields[name] = str(value)
    return fields


class JournalHandler(logging.Handler):
    """Native-protocol sender to the journal socket (a path, so tests can bind their own)."""

    def __init__(self, path: str = JOURNAL_SOCKET) -> None:
        super().__init__()
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            data = encode(record_fields(record, message))
            if len(data) > MAX_DATAGRAM:
                cut = message.encode()[: MAX_DATAGRAM // 2].decode("utf-8", "ignore")
                data = encode(record_fields(record, cut + " [truncated]"))
            self._sock.sendto(data, self.path)
        except Exception:  # noqa: BLE001 - logging must never raise into the daemon
            self.handleError(record)

    def close(self) -> None:
        try:
            self._sock.close()
        finally:
            super().close()


class PrefixHandler(logging.StreamHandler[TextIO]):
    """``<N>message`` lines on a stream journald reads (each line of a multi-line message
    gets the prefix, so none is misfiled at the default priority)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream if stream is not None else sys.stderr)

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).split("\n"))


def stream_is_journal(fd: int = 2) -> bool:
    """True if ``fd`` is the stream journald handed over (``JOURNAL_STREAM=dev:inode``)."""
    value = os.environ.get("JOURNAL_STREAM", "")
    dev, _, ino = value.partition(":")
    try:
        st = os.fstat(fd)
        return bool(value) and (st.st_dev, st.st_ino) == (int(dev), int(ino))
    except (OSError, ValueError):
        return False
