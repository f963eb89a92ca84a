# SPDX-License-Identifier: GPL-2.0-or-later
"""The sans-IO TLS 1.3 engine for QUIC: one GnuTLS session per handshake, no I/O.

In: ``receive(level, bytes)`` of handshake data the QUIC stack received (kernel level
numbering). Out: :mod:`quichsd.tls.events`, in the order they must be acted on, from
``events()``. A fatal failure raises a :class:`~quichsd.errors.HandshakeError` whose
``alert`` is the TLS alert to send as QUIC ``CONNECTION_CLOSE 0x100 + alert``; output
queued before the failure is discarded.

Rules from the research that hold here (docs/gnutls-binding.md §1.6, docs/kernel-interfaces.md §3):

1. ``%DISABLE_TLS13_COMPAT_MODE`` is always in the priority string.
2. ``gnutls_handshake()`` is never called again after it returned 0; post-handshake
   messages (NewSessionTicket) go through ``gnutls_handshake_write`` only.
3. KeyUpdate messages GnuTLS wants to send are dropped (QUIC has its own key update).
4. A server that accepts 0-RTT advertises ``max_early_data_size`` 0xffffffff and uses the
   process-wide anti-replay context (with a real add function).
5. A peer without the transport-parameters extension (0x39) is refused with
   ``missing_extension`` (109).
6. Callbacks only record; an exception inside one is captured, GnuTLS gets an error
   code, and the exception is re-raised after the C call returns.
7. Secrets are never logged and never appear in a repr.

The engine is split by concern; this module keeps the :class:`Engine` (callback handlers,
level enforcement, the handshake steps, completion info) and re-exports the rest:

- :mod:`.config`: :class:`EngineConfig`, Role/Auth/ResumptionKx, :func:`priority_string`
  (rule 1).
- :mod:`.session`: gnutls_init flags and session set-up per role and auth (rule 4).
- :mod:`.callbacks`: the process-wide C callbacks and the session registry (rule 6).
- :mod:`.framing`: header checks on what the peer sends (message types QUIC allows,
  length cap), before GnuTLS buffers it.
- :mod:`.classify`: GnuTLS errors to HandshakeError subclasses and alerts.
"""

from __future__ import annotations

import ctypes as C
import functools
import weakref
from collections import deque
from typing import Any, NoReturn

from ..errors import (
    HandshakeError,
    KeyRejected,
    LocalError,
    MissingTransportParams,
    PeerRejected,
    ProtocolViolation,
)
from ..gnutls import _lib as L
from ..logtext import quoted
from ..uapi import Cipher, CryptoLevel
from .alerts import ALERT_PROTOCOL_VERSION, ALERT_UNEXPECTED_MESSAGE, ALERT_UNKNOWN_PSK_IDENTITY
from .callbacks import LIVE
from .classify import captured_error, classify, verify_alert, verify_error
from .config import (
    CIPHER_TOKEN,
    DEFAULT_CIPHERS,
    Auth,
    EngineConfig,
    Keylog,
    ResumptionKx,
    Role,
    priority_string,
)
from .events import (
    AlertSent,
    AlpnSelected,
    CryptoData,
    Event,
    HandshakeComplete,
    PeerTransportParams,
    Secret,
    SessionData,
)
from .framing import MAX_HANDSHAKE_BYTES, NEW_SESSION_TICKET, scan_messages
from .hello import no_tls13_reason
from .session import (
    TP_EXTENSION,
    SessionResources,
    configure,
    init_flags,
    keylog_line,
    peer_certificates,
    verify_optional_client_cert,
)

#: the engine, and what importers take from here of the modules it is split into
__all__ = [
    "CIPHER_TOKEN",
    "DEFAULT_CIPHERS",
    "MAX_HANDSHAKE_BYTES",
    "TP_EXTENSION",
    "Auth",
    "Engine",
    "EngineConfig",
    "Keylog",
    "ResumptionKx",
    "Role",
    "priority_string",
    "verify_alert",
]

_TO_GNUTLS_LEVEL = {
    CryptoLevel.INITIAL: L.GNUTLS_ENCRYPTION_LEVEL_INITIAL,
    CryptoLevel.EARLY: L.GNUTLS_ENCRYPTION_LEVEL_EARLY,
    CryptoLevel.HANDSHAKE: L.GNUTLS_ENCRYPTION_LEVEL_HANDSHAKE,
    CryptoLevel.APP: L.GNUTLS_ENCRYPTION_LEVEL_APPLICATION,
}
_FROM_GNUTLS_LEVEL = {v: k for k, v in _TO_GNUTLS_LEVEL.items()}

_FROM_GNUTLS_CIPHER = {
    L.GNUTLS_CIPHER_AES_128_GCM: Cipher.AES_GCM_128,
    L.GNUTLS_CIPHER_AES_256_GCM: Cipher.AES_GCM_256,
    L.GNUTLS_CIPHER_AES_128_CCM: Cipher.AES_CCM_128,
    L.GNUTLS_CIPHER_CHACHA20_POLY1305: Cipher.CHACHA20_POLY1305,
}


@functools.lru_cache(maxsize=16)
def _group_name(group: int) -> str | None:
    name = L.gnutls_group_get_name(group)
    return name.decode() if name else None


class Engine:
    """One TLS 1.3 handshake for QUIC. Not thread-safe: use from one thread at a time."""

    def __init__(self, cfg: EngineConfig) -> None:
        self._session: int | None = None
        self.cfg = cfg
        self._events: deque[Event] = deque()
        self._error: HandshakeError | BaseException | None = None  # captured in a callback
        self._failed: HandshakeError | None = None
        self._hs_done = False
        self._app_rx = False
        self._peer_tp: bytes | None = None
        self._alpn_sent = False
        self._alpn: bytes | None = None  # selected ALPN, once known
        self._cipher: Cipher | None = None  # negotiated suite, once known (fixed after SH)
        self._alert: int | None = None
        self._rx_bytes = 0
        #: the only level the peer may send at now: the newest read key (RFC 9001 §4.1.3)
        self._rx_level = CryptoLevel.INITIAL
        self._rx_partial = bytearray()  # start of an incomplete message at _rx_level
        self._psk_identity: str | None = None
        self._res = SessionResources()  # credentials and C memory the session points at
        s = L.session_t()
        L.check(L.gnutls_init(C.byref(s), init_flags(cfg)), "gnutls_init")
        self._session = s.value
        LIVE[s.value] = weakref.ref(self)  # type: ignore[index]
        try:
            configure(s.value, cfg, self._res)  # type: ignore[arg-type]
        except BaseException:
            self.close()
            raise
        if self._res.session_data_rejected is not None:
            #: client given session data: GnuTLS refused it (a full handshake follows)
            self.session_data_rejected = self._res.session_data_rejected

    # -- callbacks (record only; never raise into C) ---------------------------------------
    def _capture(self, exc: BaseException) -> int:
        if self._error is None:
            self._error = exc
        return L.GNUTLS_E_USER_ERROR

    def _on_read(self, _s: int, glevel: int, htype: int, data: int, size: int) -> int:
        try:
            if htype == L.GNUTLS_HANDSHAKE_KEY_UPDATE:
                return 0
            self._events.append(CryptoData(_FROM_GNUTLS_LEVEL[glevel], C.string_at(data, size)))
            return 0
        except BaseException as e:
            return self._capture(e)

    def _on_secret(self, s: int, glevel: int, rx: int | None, tx: int | None, size: int) -> int:
        try:
            if self._hs_done:
                return 0
            if size > 48:
                raise LocalError(f"secret of {size} bytes exceeds the kernel's 48")
            level = _FROM_GNUTLS_LEVEL[glevel]
            if glevel == L.GNUTLS_ENCRYPTION_LEVEL_EARLY:
                cipher = _kernel_cipher(L.gnutls_early_cipher_get(s))
            elif self._cipher is not None:
                cipher = self._cipher
            else:
                cipher = self._cipher = _kernel_cipher(L.gnutls_cipher_get(s))
            if glevel == L.GNUTLS_ENCRYPTION_LEVEL_APPLICATION and rx:
                self._check_transport_params()
            if tx:
                self._events.append(Secret(level, True, cipher, C.string_at(tx, size)))
            if rx:
                self._events.append(Secret(level, False, cipher, C.string_at(rx, size)))
                if level is not CryptoLevel.EARLY:
                    self._rx_level = level
            if glevel == L.GNUTLS_ENCRYPTION_LEVEL_APPLICATION and rx:
                self._app_rx = True
                if self.cfg.role is Role.SERVER and self.cfg.ticket_key:
                    L.check(L.gnutls_session_ticket_send(s, 1, 0), "send session ticket")
            return 0
        except BaseException as e:
            return self._capture(e)

    def _on_alert(self, _s: int, _glevel: int, _alevel: int, desc: int) -> int:
        if self._alert is None:
            self._alert = desc
        return 0

    def _on_tp_recv(self, _s: int, data: int, size: int) -> int:
        try:
            self._peer_tp = C.string_at(data, size) if size else b""
            self._events.append(PeerTransportParams(self._peer_tp))
            return 0
        except BaseException as e:
            return self._capture(e)

    def _on_tp_send(self, _s: int, buf: int) -> int:
        try:
            tp = self.cfg.transport_params
            if tp is not None:
                L.check(L.gnutls_buffer_append_data(buf, tp, len(tp)), "append transport params")
            return 0
        except BaseException as e:
            return self._capture(e)

    def _on_client_hello(self, _s: int, _htype: int, when: int, _inc: int, msg: Any) -> int:
        """Server: before GnuTLS parses the ClientHello, refuse one without TLS 1.3
        (protocol_version); after it, check the transport parameters and emit ALPN."""
        try:
            if when == L.GNUTLS_HOOK_PRE:
                reason = no_tls13_reason(L.datum_bytes(msg.contents))
                if reason is not None:
                    raise PeerRejected(reason, alert=ALERT_PROTOCOL_VERSION)
                return 0
            self._check_transport_params()
            self._emit_alpn()
            return 0
        except BaseException as e:
            return self._capture(e)

    def _on_verify_optional(self, s: int) -> int:
        try:
            verify_optional_client_cert(s)
            return 0
        except BaseException as e:
            return self._capture(e)

    def _on_psk(self, _s: int, username: Any, key: Any) -> int:
        try:
            ident = L.datum_bytes(username.contents).decode("utf-8", errors="replace")
            self._psk_identity = ident
            assert self.cfg.psk_lookup is not None
            secret = self.cfg.psk_lookup(ident)
            if secret is None:
                raise KeyRejected(
                    f"unknown PSK identity {quoted(ident)}", alert=ALERT_UNKNOWN_PSK_IDENTITY
                )
            d = L.malloc_copy(secret)
            key.contents.data, key.contents.size = d.data, d.size
            return 0
        except BaseException as e:
            return self._capture(e)

    def _on_keylog(self, s: int, label: bytes, secret: Any) -> int:
        try:
            assert self.cfg.keylog is not None
            self.cfg.keylog(keylog_line(s, label, secret))
            return 0
        except BaseException as e:
            return self._capture(e)

    def _check_transport_params(self) -> None:
        if self._peer_tp is None:
            raise MissingTransportParams("peer sent no QUIC transport parameters extension (0x39)")

    def _emit_alpn(self) -> None:
        if self._alpn_sent or not self.cfg.alpns:
            return
        alpn = self._alpn = self.selected_alpn()
        if alpn is not None:
            self._alpn_sent = True
            self._events.append(AlpnSelected(alpn))

    # -- driving -------------------------------------------------------------------------
    def start(self) -> None:
        """Client: produce the ClientHello. Server: nothing (wait for receive())."""
        if self.cfg.role is Role.CLIENT:
            self._step()

    def receive(self, level: CryptoLevel, data: bytes) -> None:
        """Feed handshake bytes the peer sent at ``level``; new events become available."""
        if self._failed is not None:
            raise self._failed
        if not data:
            return
        if level is CryptoLevel.EARLY:
            self._fail_with(ProtocolViolation("handshake data at the EARLY level"))
        if level is not self._rx_level:  # GnuTLS itself ignores the level of input
            self._fail_with(
                ProtocolViolation(
                    f"handshake data at the {level.name} level while expecting "
                    f"{self._rx_level.name}",
                    alert=ALERT_UNEXPECTED_MESSAGE,
                )
            )
        self._rx_bytes += len(data)
        if self._rx_bytes > MAX_HANDSHAKE_BYTES:
            self._fail_with(
                PeerRejected(
                    f"peer sent more than {MAX_HANDSHAKE_BYTES} bytes of handshake data",
                    alert=ALERT_UNEXPECTED_MESSAGE,
                )
            )
        try:
            complete = scan_messages(self._rx_partial, level, data)
        except HandshakeError as e:
            self._fail_in_order(level, data, e)
        self._write(level, data)
        if self._rx_level is not level and self._rx_partial:
            self._fail_with(
                ProtocolViolation(
                    f"{level.name} data continues past the message that changed keys",
                    alert=ALERT_UNEXPECTED_MESSAGE,
                )
            )
        if (
            self._hs_done
            and self.cfg.role is Role.CLIENT
            and level is CryptoLevel.APP
            and NEW_SESSION_TICKET in complete
        ):
            d = L.datum_t()
            if L.gnutls_session_get_data2(self._session, C.byref(d)) >= 0:
                blob = L.take_datum(d)
                if blob:
                    self._events.append(SessionData(blob))

    def _write(self, level: CryptoLevel, data: bytes) -> None:
        ret = L.gnutls_handshake_write(self._session, _TO_GNUTLS_LEVEL[level], data, len(data))
        if ret < 0 and (self._error is not None or L.gnutls_error_is_fatal(ret)):
            self._fail(ret, f"processing {level.name} data")
        if not self._hs_done:
            self._step()

    def _fail_in_order(self, level: CryptoLevel, data: bytes, exc: HandshakeError) -> NoReturn:
        """Fail with the peer's first fault in its order: the complete messages of ``data``
        before the one the framing check refused go to GnuTLS first (a TLS 1.2 ServerHello
        followed by a ServerKeyExchange is a protocol_version failure, not an unexpected
        ServerKeyExchange)."""
        before = len(data) - len(self._rx_partial)  # the refused header starts there
        if before > 0:
            self._write(level, data[:before])
        self._fail_with(exc)

    def _step(self) -> None:
        ret = L.gnutls_handshake(self._session)
        if self._error is not None or (ret < 0 and L.gnutls_error_is_fatal(ret)):
            self._fail(ret, "handshake")
        if ret == 0:
            self._hs_done = True
            self._emit_alpn()
            self._events.append(self._completion())

    def _completion(self) -> HandshakeComplete:
        s = self._session
        cipher = self._cipher or _kernel_cipher(L.gnutls_cipher_get(s))
        return HandshakeComplete(
            cipher=cipher,
            group=_group_name(L.gnutls_group_get(s)),
            alpn=self._alpn if self._alpn is not None else self.selected_alpn(),
            resumed=bool(L.gnutls_session_is_resumed(s)),
            early_data_accepted=bool(L.gnutls_session_get_flags(s) & L.GNUTLS_SFLAGS_EARLY_DATA),
            peer_certificates=self.peer_certificates(),
            psk_identity=self._psk_identity,
        )

    def _fail(self, ret: int, what: str) -> NoReturn:
        err = self._error
        self._error = None
        self._fail_with(captured_error(err, what) if err is not None else self._classify(ret, what))

    def _classify(self, ret: int, what: str) -> HandshakeError:
        if ret == L.GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR:
            status = L.gnutls_session_get_verify_cert_status(self._session)
            peer = self._res.peer
            return verify_error(status, peer.shown if peer is not None else None)
        L.gnutls_alert_send_appropriate(self._session, ret)  # reports the alert via _on_alert
        return classify(ret, what, self._alert, self.cfg.alpns)

    def _fail_with(self, exc: HandshakeError) -> NoReturn:
        # output queued before the failure must not reach the wire
        self._events = deque(e for e in self._events if not isinstance(e, CryptoData | Secret))
        if exc.alert is not None:
            self._events.append(AlertSent(exc.alert))
        self._failed = exc
        raise exc

    # -- results ---------------------------------------------------------------------------
    def events(self) -> list[Event]:
        out = list(self._events)
        self._events.clear()
        return out

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    @property
    def complete(self) -> bool:
        return self._hs_done

    @property
    def failed(self) -> HandshakeError | None:
        return self._failed

    def selected_alpn(self) -> bytes | None:
        d = L.datum_t()
        if L.gnutls_alpn_get_selected_protocol(self._session, C.byref(d)) < 0:
            return None
        return L.datum_bytes(d)  # owned by the session: copy, don't free

    def peer_certificates(self) -> tuple[bytes, ...]:
        return peer_certificates(self._session) if self._session is not None else ()

    def close(self) -> None:
        """Free the session and per-session credentials (idempotent)."""
        if self._session is not None:
            LIVE.pop(self._session, None)  # before the handle can be reused
            L.gnutls_deinit(self._session)
            self._session = None
        self._res.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


def _kernel_cipher(gcipher: int) -> Cipher:
    cipher = _FROM_GNUTLS_CIPHER.get(gcipher)
    if cipher is None:
        raise LocalError(f"negotiated GnuTLS cipher {gcipher} has no kernel equivalent")
    return cipher
