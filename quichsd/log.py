"""Logging set-up: journald when running under systemd, else stderr; GnuTLS's log bridge.

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

from .gnutls import _lib as gnutls
from .logtext import one_line

NOTICE = 25
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
    """Level of a handshake's completion line: failures always at INFO (they must name
    the peer and the reason); successes at INFO, or DEBUG with
    ``log.handshake_completion: false``."""
    return logging.INFO if status else _successes_at


_gnutls_cb: object = None


class OneLineFormatter(logging.Formatter):
    """Escapes non-printable characters (``\\n``...) in the message, not in a traceback."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging API)
        return one_line(super().formatMessage(record))


def journal_available() -> bool:
    return bool(os.environ.get("JOURNAL_STREAM")) or os.path.exists("/run/systemd/journal/socket")


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
    handler: logging.Handler | None = None
    if not stderr and journal_available():
        try:
            from systemd.journal import JournalHandler

            handler = JournalHandler(SYSLOG_IDENTIFIER="quichsd")
            handler.setFormatter(OneLineFormatter("%(message)s"))
        except ImportError:
            handler = None
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            OneLineFormatter("quichsd[%(process)d]: %(levelname)s %(name)s: %(message)s")
        )
    root.addHandler(handler)
    root.setLevel(LEVELS[level])
    root.propagate = False
    set_gnutls_level(gnutls_level)


def set_gnutls_level(level: int) -> None:
    """Route GnuTLS's debug log to ``quichsd.gnutls`` at DEBUG (0 turns it off)."""
    global _gnutls_cb
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
