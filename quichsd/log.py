# SPDX-License-Identifier: GPL-2.0-or-later
"""Logging set-up: the journal when running under systemd, else stderr; GnuTLS's log bridge.

Where the output goes (:func:`setup`), with :mod:`quichsd.journal`'s handlers:

1. ``-s``/``--stderr``: plain lines on stderr, ``quichsd[PID]: LEVEL logger: message``.
2. The journal socket exists (``/run/systemd/journal/socket``): one native-protocol
   datagram per record, with its syslog priority (notice is 5), a ``MESSAGE_ID`` per event
   kind and the ``QUICHSD_*`` fields of a handshake's outcome (quichsd(8), JOURNAL).
3. Else, stderr is the stream journald handed over (``JOURNAL_STREAM``): ``<N>message``
   lines, so the priority survives and journald adds the identifier and pid itself.
4. Else plain lines on stderr, as in 1.

Handshake completion lines: failures at WARNING (``journalctl -p warning`` shows them),
successes at INFO, or DEBUG with ``log.handshake_completion: false``.

Secrets never reach a log: no module logs key material, and the GnuTLS bridge is only
installed when ``log.gnutls_level`` > 0. GnuTLS prints record keys and IVs at level 9,
which the config allows only with key logging on (``log.keylog_file``, see
:data:`quichsd.config.GNUTLS_KEY_LEVEL`).

One message is one line: peer-controlled text is escaped where it enters a message
(:func:`quichsd.logtext.printable`), and both handlers' formatter escapes whatever
non-printable character is left (:class:`OneLineFormatter`), so no peer can start a line.
"""

from __future__ import annotations

import logging
import os
import sys

from . import journal
from .logtext import one_line

NOTICE = journal.NOTICE
logging.addLevelName(NOTICE, "NOTICE")
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "notice": NOTICE,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
_gnutls_log = logging.getLogger("quichsd.gnutls")
_successes_at = logging.INFO


def set_handshake_completion(enabled: bool) -> None:
    """``log.handshake_completion``: successful completion lines at INFO, or at DEBUG."""
    global _successes_at
    _successes_at = logging.INFO if enabled else logging.DEBUG


def completion_level(status: int) -> int:
    """Level of a handshake's completion line: failures always at WARNING (they name the
    peer and the reason); successes at INFO, or DEBUG with
    ``log.handshake_completion: false``."""
    return logging.WARNING if status else _successes_at


def event(kind: str, **fields: object) -> dict[str, object]:
    """``extra=`` for a log call: the journal's MESSAGE_ID for the event ``kind`` (one of
    :data:`quichsd.journal.MESSAGE_IDS`) and ``QUICHSD_*`` fields (None values left out)."""
    assert kind in journal.MESSAGE_IDS, kind
    return {
        "event": kind,
        "journal": {k: v for k, v in fields.items() if v is not None},
    }


_gnutls_cb: object = None


class OneLineFormatter(logging.Formatter):
    """Escapes non-printable characters (``\\n``...) in the message, not in a traceback."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging API)
        return one_line(super().formatMessage(record))


def _stderr_fd() -> int:
    try:
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        return -1


PLAIN_FORMAT = "quichsd[%(process)d]: %(levelname)s %(name)s: %(message)s"


def handler_for(stderr: bool) -> logging.Handler:
    """The handler of the output :func:`setup` chooses (module docstring, rules 1-4)."""
    handler: logging.Handler
    if not stderr and os.path.exists(journal.JOURNAL_SOCKET):
        handler = journal.JournalHandler()
        handler.setFormatter(OneLineFormatter("%(message)s"))
    elif not stderr and journal.stream_is_journal(_stderr_fd()):
        handler = journal.PrefixHandler(sys.stderr)
        handler.setFormatter(OneLineFormatter("%(name)s: %(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(OneLineFormatter(PLAIN_FORMAT))
    return handler


def setup(
    level: str = "info",
    *,
    stderr: bool = False,
    gnutls_level: int = 0,
    handshake_completion: bool = True,
) -> None:
    """Configure the root ``quichsd`` logger (idempotent: handlers are replaced)."""
    set_handshake_completion(handshake_completion)
    root = logging.getLogger("quichsd")
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    root.addHandler(handler_for(stderr))
    root.setLevel(LEVELS[level])
    root.propagate = False
    set_gnutls_level(gnutls_level)


def set_gnutls_level(level: int) -> None:
    """Route GnuTLS's debug log to ``quichsd.gnutls`` at DEBUG (0 turns it off). Level 0
    with no bridge installed leaves GnuTLS alone (its default), so logging can be set up
    where GnuTLS cannot be loaded (``--version``, ``--import-tlshd-config``)."""
    global _gnutls_cb
    if level == 0 and _gnutls_cb is None:
        return
    from .gnutls import _lib as gnutls

    if level > 0 and _gnutls_cb is None:

        def cb(lvl: int, msg: bytes | None) -> None:
            try:
                text = (msg or b"").decode(errors="replace").rstrip()
                _gnutls_log.debug("gnutls(%d): %s", lvl, text)
            except BaseException:  # never raise into C
                pass

        _gnutls_cb = gnutls.log_func_t(cb)
        gnutls.gnutls_global_set_log_function(_gnutls_cb)
    gnutls.gnutls_global_set_log_level(level)
