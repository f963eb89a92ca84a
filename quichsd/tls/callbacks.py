# SPDX-License-Identifier: GPL-2.0-or-later
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
from typing import Any, Protocol

from ..gnutls import _lib as L


class SessionCallbacks(Protocol):
    """What a callback calls on the object that owns the session: the QUIC
    :class:`~quichsd.tls.engine.Engine`, or the TCP :class:`~quichsd.tls.tcp.TcpSession`
    (which registers for the callbacks TCP sets up only). Defined here, so this module
    imports nothing above it."""

    def _on_read(self, s: int, glevel: int, htype: int, data: int, size: int) -> int: ...
    def _on_secret(self, s: int, glevel: int, rx: int | None, tx: int | None, size: int) -> int: ...
    def _on_alert(self, s: int, glevel: int, alevel: int, desc: int) -> int: ...
    def _on_tp_recv(self, s: int, data: int, size: int) -> int: ...
    def _on_tp_send(self, s: int, buf: int) -> int: ...
    def _on_client_hello(self, s: int, htype: int, when: int, inc: int, msg: Any) -> int: ...
    def _on_verify_optional(self, s: int) -> int: ...
    def _on_psk(self, s: int, username: Any, key: Any) -> int: ...
    def _on_keylog(self, s: int, label: bytes, secret: Any) -> int: ...


#: session handle -> its owner; added from gnutls_init, removed before gnutls_deinit
LIVE: dict[int, weakref.ReferenceType[SessionCallbacks]] = {}


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
