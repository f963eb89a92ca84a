# SPDX-License-Identifier: GPL-2.0-or-later
"""Text from a peer (or any other party) made safe for one log line (pure).

A peer controls its CONNECTION_CLOSE reason phrase, its certificate subjects, the ALPN it
selects and, through a local program or a kernel consumer, the peer name: copied into a log
line verbatim, a ``\\n`` in any of them would start a line of the attacker's choosing.
:func:`printable` escapes such a string where it is put into a message;
:func:`one_line` is the safety net :mod:`quichsd.log` applies to every formatted message.
"""

from __future__ import annotations


def _escape(ch: str) -> str:
    return repr(ch)[1:-1]  # a non-printable character's repr is always an escape


def printable(text: str | bytes) -> str:
    """``text`` with every non-printable character (str.isprintable: controls, line and
    paragraph separators, unassigned code points...) and the backslash escaped as Python
    escapes them (``\\n``, ``\\x00``, ``\\u2028``, ``\\\\``); undecodable bytes become
    U+FFFD. Printable text without a backslash is returned as it is."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if text.isprintable() and "\\" not in text:
        return text
    return "".join("\\\\" if ch == "\\" else ch if ch.isprintable() else _escape(ch) for ch in text)


def quoted(text: str | bytes) -> str:
    """:func:`printable` in single quotes, for a name inside a sentence."""
    return f"'{printable(text)}'"


def one_line(message: str) -> str:
    """``message`` with its non-printable characters escaped (backslashes are left as they
    are: text already escaped by :func:`printable` is not escaped twice)."""
    if message.isprintable():
        return message
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in message)
