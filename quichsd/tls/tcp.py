# SPDX-License-Identifier: GPL-2.0-or-later
"""A TLS 1.3 GnuTLS session run directly on a TCP socket's fd, for a kTLS hand-over.

Unlike :class:`~quichsd.tls.engine.Engine` (QUIC: GnuTLS gets and emits handshake
messages, never records), GnuTLS reads and writes TLS records on the fd itself
(``gnutls_transport_set_int2``); the fd is non-blocking and :meth:`TcpSession.handshake`
says which readiness to wait for. After the handshake, :meth:`TcpSession.traffic_state`
gives each direction's key, IV and record sequence number for the kernel
(:mod:`quichsd.ktls`). Rules:

1. TLS 1.3 only, the kTLS suites only (the policy's, narrowed by the PSK's hash), and
   ``%NO_TICKETS``: a server sends no NewSessionTicket, so nothing follows the handshake
   that the kernel would have to parse.
2. A failure raises a :class:`~quichsd.errors.HandshakeError` whose ``alert`` (if any) is
   the alert to send with :meth:`send_alert`; an alert received from the peer has none.
3. Credentials, SNI and certificate verification are set up as for QUIC
   (:mod:`quichsd.tls.session`); the PSK and optional-verify callbacks find this object
   through the same registry (:mod:`quichsd.tls.callbacks`).
"""

from __future__ import annotations

import ctypes as C
import enum
import functools
import weakref
from typing import Any

from ..errors import (
    ConnectionReset,
    HandshakeError,
    KeyRejected,
    LocalError,
    PeerRejected,
)
from ..gnutls import _lib as L
from ..gnutls.creds import PskClientCredentials, PskServerCredentials
from ..ktls import TrafficState
from ..logtext import quoted
from ..uapi import Cipher
from .alerts import ALERT_PROTOCOL_VERSION, ALERT_UNKNOWN_PSK_IDENTITY, alert_name
from .callbacks import CB_CLIENT_HELLO, CB_KEYLOG, CB_PSK, LIVE
from .classify import captured_error, classify, verify_error
from .config import CIPHER_TOKEN, DEFAULT_CIPHERS, Auth, EngineConfig, ResumptionKx, Role
from .engine import _group_name, _kernel_cipher
from .events import HandshakeComplete
from .hello import (
    HelloError,
    encrypted_extensions,
    extensions,
    no_tls13_reason,
    psk_identities,
    record_size_limit,
)
from .session import (
    _DEFAULT_PRIORITIES,
    SessionResources,
    _configure_client,
    _set_credentials,
    configure_client_certificates,
    keylog_line,
    peer_certificates,
    verify_optional_client_cert,
)

GNUTLS_HANDSHAKE_ENCRYPTED_EXTENSIONS = 8
GNUTLS_HANDSHAKE_ANY = 0xFFFFFFFF
SHA384_KEY_LEN = 48
#: TLS 1.3 plaintext per record (RFC 8446 §5.1)
MAX_PLAINTEXT = 16384

#: TLS 1.3 suites by the hash their PSK binders use (RFC 8446 §4.2.11): a PSK of 48 bytes
#: is a SHA-384 one (NVMe ``NVMe1R02``), of 32 bytes a SHA-256 one, as tlshd decides
SHA384_CIPHERS = frozenset({Cipher.AES_GCM_256})
SHA256_CIPHERS = frozenset({Cipher.AES_GCM_128, Cipher.CHACHA20_POLY1305, Cipher.AES_CCM_128})


class Want(enum.Enum):
    READ = "read"
    WRITE = "write"


def tcp_ciphers(cfg: EngineConfig, psk_len: int | None = None) -> tuple[Cipher, ...]:
    """The suites to offer: the policy's, narrowed to the PSK's hash (``psk_len``: the
    key's length; a client's own key by default)."""
    ciphers = cfg.ciphers or DEFAULT_CIPHERS
    if psk_len is None and cfg.auth is Auth.PSK and cfg.psk_key is not None:
        psk_len = len(cfg.psk_key)
    by_hash = {32: SHA256_CIPHERS, SHA384_KEY_LEN: SHA384_CIPHERS}.get(psk_len or 0)
    if by_hash is not None:
        narrowed = tuple(c for c in ciphers if c in by_hash)
        if not narrowed:
            allowed = ", ".join(CIPHER_TOKEN[c] for c in ciphers)
            sha = "384" if psk_len == SHA384_KEY_LEN else "256"
            raise LocalError(
                f"a {psk_len}-byte PSK needs a SHA-{sha} suite; the configured ciphers "
                f"({allowed}) have none"
            )
        ciphers = narrowed
    return ciphers


def tcp_priority_string(cfg: EngineConfig, psk_len: int | None = None) -> str:
    """The GnuTLS priority string of a TCP handshake for ``cfg`` (pure)."""
    return _tcp_priority(cfg.auth, tcp_ciphers(cfg, psk_len), cfg.groups, cfg.resumption_kx)


@functools.lru_cache(maxsize=64)
def _tcp_priority(
    auth: Auth, ciphers: tuple[Cipher, ...], groups: tuple[str, ...], kx: ResumptionKx
) -> str:
    parts = ["NORMAL", "-VERS-ALL", "+VERS-TLS1.3", "%NO_TICKETS", "-CIPHER-ALL"]
    parts += ["+" + CIPHER_TOKEN[c] for c in ciphers]
    if groups:
        parts.append("-GROUP-ALL")
        parts += ["+GROUP-" + g for g in groups]
    if auth is Auth.PSK and kx is ResumptionKx.PSK:  # the key alone first, as tlshd
        parts += ["+PSK", "+ECDHE-PSK", "+DHE-PSK"]
    elif auth is Auth.PSK:
        parts += ["+ECDHE-PSK", "+DHE-PSK", "+PSK"]
    return ":".join(parts)


class TcpSession:
    """One TLS 1.3 handshake on a non-blocking TCP fd. Use from one thread at a time."""

    def __init__(self, cfg: EngineConfig, fd: int) -> None:
        self.cfg = cfg
        self._session: int | None = None
        self._error: BaseException | None = None  # captured in a callback
        self._psk_identity: str | None = None
        #: server: identity -> key, looked up once (in the ClientHello hook or the callback)
        self._psk_keys: dict[str, bytes | None] = {}
        #: the peer's record_size_limit (RFC 8449), once its hello said it
        self._peer_limit: int | None = None
        self._res = SessionResources()
        self.done = False
        flags = L.GNUTLS_CLIENT if cfg.role is Role.CLIENT else L.GNUTLS_SERVER
        s = L.session_t()
        L.check(L.gnutls_init(C.byref(s), flags | L.GNUTLS_NO_TICKETS), "gnutls_init")
        self._session = s.value
        # the PSK and verify callbacks route by session handle (rule 3)
        LIVE[s.value] = weakref.ref(self)  # type: ignore[index,arg-type]
        try:
            self._configure(s.value, fd)  # type: ignore[arg-type]
        except BaseException:
            self.close()
            raise

    def _configure(self, s: int, fd: int) -> None:
        cfg = self.cfg
        prio = (cfg.priorities or _DEFAULT_PRIORITIES).get(tcp_priority_string(cfg))
        L.check(L.gnutls_priority_set(s, prio), "set priority")
        if cfg.auth is Auth.PSK and cfg.role is Role.CLIENT and cfg.psk_identity and cfg.psk_key:
            sha384 = len(cfg.psk_key) == SHA384_KEY_LEN
            self._res.psk_client = PskClientCredentials(
                cfg.psk_identity, cfg.psk_key, sha384=sha384
            )
            L.check(
                L.gnutls_credentials_set(s, L.GNUTLS_CRD_PSK, self._res.psk_client.handle),
                "set PSK credentials",
            )
        else:
            _set_credentials(s, cfg, self._res)
        # the peer's hello (its record_size_limit; a server's PSK identity, whose key's
        # hash must be known before GnuTLS checks the binder): see quichsd.tls.hello
        L.gnutls_handshake_set_hook_function(
            s, GNUTLS_HANDSHAKE_ANY, L.GNUTLS_HOOK_BOTH, CB_CLIENT_HELLO
        )
        if cfg.keylog is not None:
            L.gnutls_session_set_keylog_function(s, CB_KEYLOG)
        if cfg.role is Role.CLIENT:
            _configure_client(s, cfg, self._res)
        else:
            configure_client_certificates(s, cfg, self._res)
        L.gnutls_transport_set_int2(s, fd, fd)

    # -- callbacks (record only; never raise into C) ---------------------------------------
    def _lookup(self, ident: str) -> bytes | None:
        if ident not in self._psk_keys:
            assert self.cfg.psk_lookup is not None
            self._psk_keys[ident] = self.cfg.psk_lookup(ident)
        return self._psk_keys[ident]

    def _on_client_hello(self, s: int, htype: int, when: int, incoming: int, msg: Any) -> int:
        """Every handshake message's hook; acts on the peer's hello before GnuTLS parses
        it: its record_size_limit, and (server, PSK) a SHA-384 key for the first offered
        identity switches the session to SHA-384 PSK credentials and suites."""
        try:
            if when != L.GNUTLS_HOOK_PRE or not incoming:
                return 0
            server = self.cfg.role is Role.SERVER
            want = (
                L.GNUTLS_HANDSHAKE_CLIENT_HELLO if server else GNUTLS_HANDSHAKE_ENCRYPTED_EXTENSIONS
            )
            if htype != want:
                return 0
            body = L.datum_bytes(msg.contents)
            reason = no_tls13_reason(body) if server else None
            if reason is not None:
                raise PeerRejected(reason, alert=ALERT_PROTOCOL_VERSION)
            try:
                self._peer_limit = record_size_limit(
                    extensions(body) if server else encrypted_extensions(body)
                )
                offered = psk_identities(body) if server and self.cfg.auth is Auth.PSK else []
            except HelloError:
                return 0  # GnuTLS refuses it with the right alert
            if not offered:
                return 0
            key = self._lookup(offered[0].decode("utf-8", errors="replace"))
            if key is None or len(key) != SHA384_KEY_LEN:
                return 0
            creds = PskServerCredentials(CB_PSK, sha384=True)
            L.check(L.gnutls_credentials_set(s, L.GNUTLS_CRD_PSK, creds.handle), "set PSK creds")
            if self._res.psk_server is not None:
                self._res.keep.append(self._res.psk_server)  # freed after gnutls_deinit
            self._res.psk_server = creds
            prio = (self.cfg.priorities or _DEFAULT_PRIORITIES).get(
                tcp_priority_string(self.cfg, SHA384_KEY_LEN)
            )
            L.check(L.gnutls_priority_set(s, prio), "set SHA-384 PSK priority")
            return 0
        except BaseException as e:
            self._error = self._error or e
            return L.GNUTLS_E_USER_ERROR

    def _on_psk(self, _s: int, username: Any, key: Any) -> int:
        try:
            ident = L.datum_bytes(username.contents).decode("utf-8", errors="replace")
            self._psk_identity = ident
            secret = self._lookup(ident)
            if secret is None:
                raise KeyRejected(
                    f"unknown PSK identity {quoted(ident)}", alert=ALERT_UNKNOWN_PSK_IDENTITY
                )
            d = L.malloc_copy(secret)
            key.contents.data, key.contents.size = d.data, d.size
            return 0
        except BaseException as e:
            self._error = self._error or e
            return L.GNUTLS_E_USER_ERROR

    def _on_verify_optional(self, s: int) -> int:
        try:
            verify_optional_client_cert(s)
            return 0
        except BaseException as e:
            self._error = self._error or e
            return L.GNUTLS_E_USER_ERROR

    def _on_keylog(self, s: int, label: bytes, secret: Any) -> int:
        try:
            assert self.cfg.keylog is not None
            self.cfg.keylog(keylog_line(s, label, secret))
            return 0
        except BaseException as e:
            self._error = self._error or e
            return L.GNUTLS_E_USER_ERROR

    # -- the handshake ---------------------------------------------------------------------
    def handshake(self) -> Want | None:
        """One step: None once the handshake is complete, else what to wait for."""
        s = self._session
        while True:
            ret = L.gnutls_handshake(s)
            if ret == 0 and self._error is None:
                self.done = True
                return None
            if self._error is None and ret in (L.GNUTLS_E_AGAIN, L.GNUTLS_E_INTERRUPTED):
                return Want.WRITE if L.gnutls_record_get_direction(s) else Want.READ
            if self._error is None and not L.gnutls_error_is_fatal(ret):
                continue  # a warning alert: go on, as tlshd does
            raise self._failure(ret)

    def _failure(self, ret: int) -> HandshakeError:
        s = self._session
        if self._error is not None:
            err, self._error = self._error, None
            return captured_error(err, "handshake")
        if ret == L.GNUTLS_E_FATAL_ALERT_RECEIVED:
            alert = L.gnutls_alert_get(s)
            text = f"peer sent TLS alert {alert} ({alert_name(alert)})"
            return KeyRejected(text) if alert == ALERT_UNKNOWN_PSK_IDENTITY else PeerRejected(text)
        if ret == L.GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR:
            peer = self._res.peer
            status = L.gnutls_session_get_verify_cert_status(s)
            return verify_error(status, peer.shown if peer is not None else None)
        if ret in (L.GNUTLS_E_PREMATURE_TERMINATION, L.GNUTLS_E_PULL_ERROR, L.GNUTLS_E_PUSH_ERROR):
            return ConnectionReset(f"connection closed during the handshake ({L.strerror(ret)})")
        level = C.c_int(0)
        alert = L.gnutls_error_to_alert(ret, C.byref(level))
        return classify(ret, "handshake", alert if alert >= 0 else None, ())

    def send_alert(self, alert: int) -> bool:
        """Send a fatal ``alert`` to the peer (non-blocking: False if it did not go)."""
        for _ in range(3):
            ret = L.gnutls_alert_send(self._session, L.GNUTLS_AL_FATAL, alert)
            if ret not in (L.GNUTLS_E_AGAIN, L.GNUTLS_E_INTERRUPTED):
                return bool(ret >= 0)
        return False

    # -- results ---------------------------------------------------------------------------
    def pending(self) -> int:
        """Record bytes GnuTLS read from the fd and holds undelivered (0 for a hand-over)."""
        return int(L.gnutls_record_check_pending(self._session))

    def max_send(self) -> int:
        """The largest plaintext per record the peer accepts: its RFC 8449 limit less the
        content-type byte TLS 1.3 counts in it; 16384 when it set none."""
        if self._peer_limit is None:
            return MAX_PLAINTEXT
        return min(self._peer_limit - 1, MAX_PLAINTEXT)

    def cipher(self) -> Cipher:
        return _kernel_cipher(L.gnutls_cipher_get(self._session))

    def traffic_state(self, read: bool) -> TrafficState:
        """Key, IV and next record sequence number of one direction (read = RX)."""
        if L.gnutls_protocol_get_version(self._session) != L.GNUTLS_TLS1_3:
            raise LocalError("the session is not TLS 1.3")
        mac, iv, key = L.datum_t(), L.datum_t(), L.datum_t()
        seq = (C.c_ubyte * 8)()
        ret = L.gnutls_record_get_state(
            self._session, int(read), C.byref(mac), C.byref(iv), C.byref(key), C.byref(seq)
        )
        if ret < 0:
            raise LocalError(f"gnutls_record_get_state: {L.strerror(ret)}")
        # datums point into the session: copy
        return TrafficState(
            self.cipher(), L.datum_bytes(key), L.datum_bytes(iv), int.from_bytes(bytes(seq), "big")
        )

    def completion(self) -> HandshakeComplete:
        s = self._session
        return HandshakeComplete(
            cipher=self.cipher(),
            group=_group_name(L.gnutls_group_get(s)),
            alpn=None,
            resumed=False,
            early_data_accepted=False,
            peer_certificates=self.peer_certificates(),
            psk_identity=self._psk_identity,
        )

    def peer_certificates(self) -> tuple[bytes, ...]:
        return peer_certificates(self._session) if self._session is not None else ()

    def close(self) -> None:
        """Free the session (idempotent). Sends nothing: the kernel owns the fd now."""
        if self._session is not None:
            LIVE.pop(self._session, None)
            L.gnutls_deinit(self._session)
            self._session = None
        self._res.close()

    def __del__(self) -> None:
        self.close()
