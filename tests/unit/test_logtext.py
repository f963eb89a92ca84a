# SPDX-License-Identifier: GPL-2.0-or-later
"""issue 11 item 14: peer-controlled text cannot start a log line of its own."""

from __future__ import annotations

import io
import logging

from quichsd import log as logsetup
from quichsd.logtext import one_line, printable, quoted


def test_issue11_item14_printable_escapes_controls_and_backslash() -> None:
    assert printable("server.test") == "server.test"
    assert printable("a\nb\r\x00\x1b[2J\u2028\\") == "a\\nb\\r\\x00\\x1b[2J\\u2028\\\\"
    assert printable(b"h3\xff\n") == "h3\ufffd\\n"
    assert quoted("x\ty") == "'x\\ty'"
    assert printable("bücher.test") == "bücher.test"


def test_issue11_item14_one_line_keeps_escapes_as_they_are() -> None:
    assert one_line("reason: a\\nb") == "reason: a\\nb"
    assert one_line("reason: a\nb\u0085c") == "reason: a\\nb\\x85c"


def test_issue11_item14_the_daemon_formatter_writes_one_line_per_message() -> None:
    """Whatever reaches a message unescaped, the daemon's handler writes it on one line; a
    traceback keeps its lines."""
    root = logging.getLogger("quichsd")
    saved = (list(root.handlers), root.level, root.propagate)
    try:
        logsetup.setup("info", stderr=True)
        (handler,) = root.handlers
        assert isinstance(handler, logging.StreamHandler)
        assert isinstance(handler.formatter, logsetup.OneLineFormatter)
        out = io.StringIO()
        handler.setStream(out)
        test_log = logging.getLogger("quichsd.test")
        test_log.info("peer said %s", "bye\nquichsd[1]: INFO forged")
        try:
            raise ValueError("x")
        except ValueError:
            test_log.exception("failed\nforged")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        root.propagate = saved[2]
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("peer said bye\\nquichsd[1]: INFO forged")
    assert lines[1].endswith("failed\\nforged") and lines[2] == "Traceback (most recent call last):"
    assert not any(ln.startswith(("quichsd[1]", "forged")) for ln in lines)
