"""The process-wide GnuTLS callbacks, and the registry that routes them to their Engine.

One CFUNCTYPE object per callback for the whole process (never freed, so C can always call
it); each finds its Engine by the session handle GnuTLS passes and calls the matching
``Engine._on_*`` method. :data:`LIVE` holds weak references: an Engine dropped without
close() is still freed (and deinits its session). An Engine is registered from
gnutls_init until gnutls_deinit, so a callback always finds it; the lookup is inside the
try anyway, as no exception may reach C (rule 6 of :mod:`quichsd.tls.engine`).
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from ..gnutls import _lib as L

if TYPE_CHECKING:
    from .engine import Engine

#: session handle -> its Engine; Engine.__init__ adds, Engine.close removes (before deinit)
LIVE: dict[int, weakref.ReferenceType[Engine]] = {}


def _cb_read(s: int, glevel: int, htype: int, data: int, size: int) -> int:
    try:
        return LIVE[s]()._on_read(s, glevel, htype, data, size)  # type: ignore[union-attr]
    except BaseException:
        return L.GNUTLS_E_USER_ERROR


def _cb_secret(s: int, glevel: int, rx: int | None, tx: int | None, size: int) -> int:
    try:
        return LIVE[s]()._on_secret(s, glevel, rx, tx, size)  # type: ignore[union-attr]
    except BaseException:
        return L.GNUTLS_E_USER_ERROR


def _cb_alert(s: int, glevel: int, alevel: int, desc: int) -> int:
    try:
        return LIVE[s]()._on_alert(s, glevel, alevel, desc)  # type: ignore[union-attr]
    except BaseException:
        return L.GNUTLS_E_USER_ERROR


def _cb_tp_recv(s: int, data: int, size: int) -> int:
    try:
        return LIVE[s]()._on_tp_recv(s, data, size)  # type: ignore[union-attr]
    except BaseException:
        return L.GNUTLS_E_USER_ERROR


def _cb_tp_send(s: int, buf: int) -> int:
    try:
        return LIVE[s]()._on_tp_send(s, buf)  # type: ignore[union-attr]
    except BaseException:
        return L.GNUTLS_E_USER_ERROR


def _cb_client_hello(s: int, htype: int, when: int, inc: int, msg: Any) -> int:
    try:
        return LIVE[s]()._on_client_hello(s, htype, when, inc, msg)  # type: ignore[union-attr]
    except BaseException:
        return L.GNUTLS_E_USER_ERROR


def _cb_verify_optional(s: int) -> int:
    try:
        return LIVE[s]()._on_verify_optional(s)  # type: ignore[union-attr]
    except BaseException:
        return L.GNUTLS_E_USER_ERROR


def _cb_psk(s: int, username: Any, key: Any) -> int:
    try:
        return LIVE[s]()._on_psk(s, username, key)  # type: ignore[union-attr]
    except BaseException:
        return L.GNUTLS_E_USER_ERROR


def _cb_keylog(s: int, label: bytes, secret: Any) -> int:
    try:
        return LIVE[s]()._on_keylog(s, label, secret)  # type: ignore[union-attr]
    except BaseException:
        return L.GNUTLS_E_USER_ERROR


CB_READ = L.read_func_t(_cb_read)
CB_SECRET = L.secret_func_t(_cb_secret)
CB_ALERT = L.alert_read_func_t(_cb_alert)
CB_TP_RECV = L.ext_recv_func_t(_cb_tp_recv)
CB_TP_SEND = L.ext_send_func_t(_cb_tp_send)
CB_CLIENT_HELLO = L.hook_func_t(_cb_client_hello)
CB_VERIFY_OPTIONAL = L.verify_func_t(_cb_verify_optional)
CB_PSK = L.psk_server_func2_t(_cb_psk)
CB_KEYLOG = L.keylog_func_t(_cb_keylog)
