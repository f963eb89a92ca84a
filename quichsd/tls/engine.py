"""The sans-IO TLS 1.3 engine for QUIC: one GnuTLS session per handshake, no I/O.

In: ``receive(level, bytes)`` of handshake data the QUIC stack received (kernel level
numbering). Out: :mod:`quichsd.tls.events`, in the order they must be acted on, from
``events()``. A fatal failure raises a :class:`~quichsd.errors.HandshakeError` whose
``alert`` is the TLS alert to send as QUIC ``CONNECTION_CLOSE 0x100 + alert``; output
queued before the failure is discarded.

Rules from the research that hold here (python-ecosystem.md §1.6, kernel-interfaces.md §3):

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
"""

from __future__ import annotations

import ctypes as C
import enum
import functools
import ipaddress
import threading
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import (
    HandshakeError,
    KeyRejected,
    LocalError,
    MissingTransportParams,
    PeerRejected,
    ProtocolViolation,
)
from ..gnutls import _lib as L
from ..gnutls.creds import (
    AntiReplay,
    CertificateCredentials,
    PriorityCache,
    PskClientCredentials,
    PskLookup,
    PskServerCredentials,
)
from ..uapi import CertRequest, Cipher, CryptoLevel
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

TP_EXTENSION = 0x39
#: cap on handshake bytes accepted from one peer (RFC 9000 §7.5 lets us choose; the
#: largest legitimate flight is a long certificate chain)
MAX_HANDSHAKE_BYTES = 128 * 1024
#: handshake message types QUIC lets a peer send us (RFC 9001 §6 and §8.3 forbid KeyUpdate
#: and EndOfEarlyData): ClientHello, ServerHello, NewSessionTicket, EncryptedExtensions,
#: Certificate, CertificateRequest, CertificateVerify, Finished
_ALLOWED_RX_TYPES = frozenset({1, 2, 4, 8, 11, 13, 15, 20})
_NEW_SESSION_TICKET = 4

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

#: GnuTLS priority token per kernel cipher number
CIPHER_TOKEN = {
    Cipher.AES_GCM_128: "AES-128-GCM",
    Cipher.AES_GCM_256: "AES-256-GCM",
    Cipher.AES_CCM_128: "AES-128-CCM",
    Cipher.CHACHA20_POLY1305: "CHACHA20-POLY1305",
}
DEFAULT_CIPHERS = (
    Cipher.AES_GCM_128,
    Cipher.AES_GCM_256,
    Cipher.CHACHA20_POLY1305,
    Cipher.AES_CCM_128,
)

# TLS alert descriptions we choose ourselves
ALERT_UNEXPECTED_MESSAGE = 10
ALERT_BAD_CERTIFICATE = 42
ALERT_DECODE_ERROR = 50
ALERT_CERTIFICATE_REVOKED = 44
ALERT_CERTIFICATE_EXPIRED = 45
ALERT_UNKNOWN_CA = 48
ALERT_INTERNAL_ERROR = 80
ALERT_MISSING_EXTENSION = 109
ALERT_UNKNOWN_PSK_IDENTITY = 115
ALERT_NO_APPLICATION_PROTOCOL = 120


class Role(enum.Enum):
    CLIENT = "client"
    SERVER = "server"


class Auth(enum.Enum):
    X509 = "x509"
    PSK = "psk"
    UNAUTH = "unauth"


class ResumptionKx(enum.Enum):
    """Key exchange on resumption: psk_dhe_ke (forward secret) or psk_ke (cheaper)."""

    PSK_DHE = "psk_dhe"
    PSK = "psk"


Keylog = Callable[[str], None]


@dataclass(frozen=True)
class EngineConfig:
    role: Role
    auth: Auth = Auth.X509
    alpns: tuple[bytes, ...] = ()
    #: allowed ciphers in preference order; empty = all four
    ciphers: tuple[Cipher, ...] = ()
    #: GnuTLS group names (``X25519``, ``SECP256R1``...) in preference order; empty = default
    groups: tuple[str, ...] = ()
    #: our transport-parameters extension body; None sends none (only tests want that)
    transport_params: bytes | None = b""
    #: client: SNI and the name verified in the server certificate
    peer_name: str | None = None
    #: verify the peer's certificate chain (client: always sensible; server: client certs)
    verify_peer: bool = True
    cert_request: CertRequest = CertRequest.IGNORE
    x509: CertificateCredentials | None = None
    psk_identity: str | None = None
    psk_key: bytes | None = field(default=None, repr=False)
    psk_lookup: PskLookup | None = None
    session_data: bytes | None = field(default=None, repr=False)
    ticket_key: bytes | None = field(default=None, repr=False)
    early_data: bool = True
    resumption_kx: ResumptionKx = ResumptionKx.PSK_DHE
    anti_replay: AntiReplay | None = None
    priorities: PriorityCache | None = None
    #: receives NSS key-log lines (debugging only; off unless explicitly configured)
    keylog: Keylog | None = None


def priority_string(cfg: EngineConfig) -> str:
    """The GnuTLS priority string for ``cfg`` (pure; cached per distinct value)."""
    return _priority_string(cfg.role, cfg.auth, cfg.ciphers, cfg.groups, cfg.resumption_kx)


@functools.lru_cache(maxsize=64)
def _priority_string(
    role: Role,
    auth: Auth,
    ciphers: tuple[Cipher, ...],
    groups: tuple[str, ...],
    resumption_kx: ResumptionKx,
) -> str:
    parts = ["%DISABLE_TLS13_COMPAT_MODE", "NORMAL", "-VERS-ALL", "+VERS-TLS1.3", "-CIPHER-ALL"]
    parts += ["+" + CIPHER_TOKEN[c] for c in (ciphers or DEFAULT_CIPHERS)]
    if groups:
        parts.append("-GROUP-ALL")
        parts += ["+GROUP-" + g for g in groups]
    if auth is Auth.PSK or resumption_kx is ResumptionKx.PSK:
        parts += ["+PSK", "+ECDHE-PSK", "+DHE-PSK"]
    elif role is Role.SERVER:  # prefer psk_dhe_ke, still resume psk_ke-only clients
        parts += ["+ECDHE-PSK", "+DHE-PSK", "+PSK"]
    else:
        parts += ["+ECDHE-PSK", "+DHE-PSK"]
    return ":".join(parts)


_DEFAULT_PRIORITIES = PriorityCache()


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def verify_alert(status: int) -> int:
    """The TLS alert that best names a certificate-verification failure (RFC 8446 §6.2)."""
    if status & L.GNUTLS_CERT_REVOKED:
        return ALERT_CERTIFICATE_REVOKED
    if status & (L.GNUTLS_CERT_EXPIRED | L.GNUTLS_CERT_NOT_ACTIVATED):
        return ALERT_CERTIFICATE_EXPIRED
    if status & (L.GNUTLS_CERT_SIGNER_NOT_FOUND | L.GNUTLS_CERT_SIGNER_NOT_CA):
        return ALERT_UNKNOWN_CA
    return ALERT_BAD_CERTIFICATE


@functools.lru_cache(maxsize=64)
def _alpn_array(alpns: tuple[bytes, ...]) -> tuple[Any, tuple[L.OwnedDatum, ...]]:
    """A ``gnutls_datum_t[]`` of ``alpns`` (and the buffers it points at), built once."""
    bufs = tuple(L.OwnedDatum(a) for a in alpns)
    return (L.datum_t * len(bufs))(*[b.datum for b in bufs]), bufs


#: C copies of server ticket keys, one per distinct key (a daemon uses one or a few), made
#: once instead of per handshake; an evicted copy is zeroed. Guarded by the lock (engines
#: may be built on executor threads, and a copy must not be wiped while GnuTLS reads it).
_TICKET_KEYS: dict[bytes, L.OwnedDatum] = {}
_TICKET_KEYS_MAX = 4
_TICKET_KEYS_LOCK = threading.Lock()


def _ticket_key_datum(key: bytes) -> L.OwnedDatum:
    d = _TICKET_KEYS.get(key)
    if d is None:
        if len(_TICKET_KEYS) >= _TICKET_KEYS_MAX:
            _TICKET_KEYS.pop(next(iter(_TICKET_KEYS))).wipe()
        d = _TICKET_KEYS[key] = L.OwnedDatum(key)
    return d


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
        self._keep: list[Any] = []  # C memory that must outlive the session
        self._psk_client: PskClientCredentials | None = None
        self._psk_server: PskServerCredentials | None = None
        s = L.session_t()
        L.check(L.gnutls_init(C.byref(s), self._init_flags()), "gnutls_init")
        self._session = s.value
        _LIVE[s.value] = weakref.ref(self)  # type: ignore[index]
        try:
            self._configure()
        except BaseException:
            self.close()
            raise

    # -- setup ---------------------------------------------------------------------------
    def _init_flags(self) -> int:
        cfg = self.cfg
        if cfg.role is Role.CLIENT:
            flags = L.GNUTLS_CLIENT | L.GNUTLS_NO_END_OF_EARLY_DATA
            if cfg.early_data:
                flags |= L.GNUTLS_ENABLE_EARLY_DATA
            return flags
        flags = L.GNUTLS_SERVER | L.GNUTLS_NO_AUTO_SEND_TICKET | L.GNUTLS_NO_END_OF_EARLY_DATA
        if cfg.early_data and cfg.ticket_key and cfg.anti_replay is not None:
            flags |= L.GNUTLS_ENABLE_EARLY_DATA
        return flags

    def _configure(self) -> None:
        cfg, s = self.cfg, self._session
        prio = (cfg.priorities or _DEFAULT_PRIORITIES).get(priority_string(cfg))
        L.check(L.gnutls_priority_set(s, prio), "set priority")
        self._set_credentials()
        if cfg.alpns:
            arr, _bufs = _alpn_array(cfg.alpns)  # GnuTLS copies the protocols
            ret = L.gnutls_alpn_set_protocols(s, arr, len(cfg.alpns), L.GNUTLS_ALPN_MANDATORY)
            L.check(ret, "set ALPN protocols")
        L.gnutls_handshake_set_read_function(s, _CB_READ)
        L.gnutls_handshake_set_secret_function(s, _CB_SECRET)
        L.gnutls_alert_set_read_function(s, _CB_ALERT)
        ret = L.gnutls_session_ext_register(
            s,
            b"QUIC Transport Parameters",
            TP_EXTENSION,
            L.GNUTLS_EXT_TLS,
            _CB_TP_RECV,
            _CB_TP_SEND,
            None,
            None,
            None,
            L.GNUTLS_EXT_FLAG_TLS | L.GNUTLS_EXT_FLAG_CLIENT_HELLO | L.GNUTLS_EXT_FLAG_EE,
        )
        L.check(ret, "register transport-parameters extension")
        if cfg.keylog is not None:
            L.gnutls_session_set_keylog_function(s, _CB_KEYLOG)
        if cfg.role is Role.CLIENT:
            self._configure_client()
        else:
            self._configure_server()

    def _set_credentials(self) -> None:
        cfg, s = self.cfg, self._session
        if cfg.auth is Auth.PSK:
            if cfg.role is Role.CLIENT:
                if cfg.psk_identity is None or cfg.psk_key is None:
                    raise LocalError("PSK client needs an identity and a key")
                self._psk_client = PskClientCredentials(cfg.psk_identity, cfg.psk_key)
                L.check(
                    L.gnutls_credentials_set(s, L.GNUTLS_CRD_PSK, self._psk_client.handle),
                    "set PSK credentials",
                )
            else:
                if cfg.psk_lookup is None:
                    raise LocalError("PSK server needs a key lookup")
                self._psk_server = PskServerCredentials(_CB_PSK)
                L.check(
                    L.gnutls_credentials_set(s, L.GNUTLS_CRD_PSK, self._psk_server.handle),
                    "set PSK credentials",
                )
        if cfg.x509 is not None:
            L.check(
                L.gnutls_credentials_set(s, L.GNUTLS_CRD_CERTIFICATE, cfg.x509.handle),
                "set certificate credentials",
            )
        elif cfg.auth is not Auth.PSK:
            raise LocalError(
                f"{cfg.role.value} {cfg.auth.value} handshake needs certificate credentials"
            )
        if cfg.role is Role.SERVER and cfg.auth is Auth.X509 and not cfg.x509.has_key:  # type: ignore[union-attr]
            raise LocalError("server has no certificate and private key")

    def _configure_client(self) -> None:
        cfg, s = self.cfg, self._session
        name = cfg.peer_name
        if name and not _is_ip(name):  # RFC 6066 §3: no SNI for IP literals
            L.check(
                L.gnutls_server_name_set(s, L.GNUTLS_NAME_DNS, name.encode(), len(name)), "set SNI"
            )
        if cfg.x509 is not None and cfg.verify_peer and cfg.auth is not Auth.PSK:
            # gnutls_session_set_verify_cert does NOT copy the name (pitfall 10)
            hostname = C.create_string_buffer(name.encode()) if name else None
            self._keep.append(hostname)
            L.gnutls_session_set_verify_cert(s, C.addressof(hostname) if hostname else None, 0)
        if cfg.session_data:
            ret = L.gnutls_session_set_data(s, cfg.session_data, len(cfg.session_data))
            # corrupt or foreign session data: fall back to a full handshake
            self.session_data_rejected = ret < 0

    def _configure_server(self) -> None:
        cfg, s = self.cfg, self._session
        if cfg.x509 is not None and cfg.auth is not Auth.PSK:
            L.gnutls_certificate_server_set_request(s, int(cfg.cert_request))
            if cfg.cert_request is CertRequest.REQUIRE and cfg.verify_peer:
                L.gnutls_session_set_verify_cert(s, None, 0)
            elif cfg.cert_request is CertRequest.REQUEST and cfg.verify_peer:
                # GnuTLS's own check fails when no certificate came: verify only one sent
                L.gnutls_session_set_verify_function(s, _CB_VERIFY_OPTIONAL)
        if cfg.ticket_key:
            with _TICKET_KEYS_LOCK:  # GnuTLS copies the key into the session
                key = _ticket_key_datum(cfg.ticket_key)
                ret = L.gnutls_session_ticket_enable_server(s, key.ref())
            L.check(ret, "enable session tickets")
            if cfg.early_data and cfg.anti_replay is not None:
                L.check(
                    L.gnutls_record_set_max_early_data_size(s, 0xFFFFFFFF),
                    "set max_early_data_size",
                )
                cfg.anti_replay.enable(s)  # type: ignore[arg-type]
        L.gnutls_handshake_set_hook_function(
            s, L.GNUTLS_HANDSHAKE_CLIENT_HELLO, L.GNUTLS_HOOK_POST, _CB_CLIENT_HELLO
        )

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

    def _on_client_hello(self, _s: int, _htype: int, _when: int, _inc: int, _msg: Any) -> int:
        try:
            self._check_transport_params()
            self._emit_alpn()
            return 0
        except BaseException as e:
            return self._capture(e)

    def _on_verify_optional(self, s: int) -> int:
        try:
            if not self.peer_certificates():
                return 0
            status = C.c_uint(0)
            ret = L.gnutls_certificate_verify_peers2(s, C.byref(status))
            if ret < 0:
                raise PeerRejected(
                    f"peer certificate could not be verified: {L.strerror(ret)}",
                    alert=ALERT_BAD_CERTIFICATE,
                )
            if status.value:
                raise PeerRejected(
                    f"peer certificate rejected: {self._verify_text(status.value)}",
                    alert=verify_alert(status.value),
                )
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
                    f"unknown PSK identity {ident!r}", alert=ALERT_UNKNOWN_PSK_IDENTITY
                )
            d = L.malloc_copy(secret)
            key.contents.data, key.contents.size = d.data, d.size
            return 0
        except BaseException as e:
            return self._capture(e)

    def _on_keylog(self, s: int, label: bytes, secret: Any) -> int:
        try:
            assert self.cfg.keylog is not None
            client, server = L.datum_t(), L.datum_t()
            L.gnutls_session_get_random(s, C.byref(client), C.byref(server))
            line = (
                f"{label.decode()} {L.datum_bytes(client).hex()} "
                f"{L.datum_bytes(secret.contents).hex()}"
            )
            self.cfg.keylog(line)
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
        complete = self._frame(level, data)
        ret = L.gnutls_handshake_write(self._session, _TO_GNUTLS_LEVEL[level], data, len(data))
        if ret < 0 and (self._error is not None or L.gnutls_error_is_fatal(ret)):
            self._fail(ret, f"processing {level.name} data")
        if not self._hs_done:
            self._step()
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
            and _NEW_SESSION_TICKET in complete
        ):
            d = L.datum_t()
            if L.gnutls_session_get_data2(self._session, C.byref(d)) >= 0:
                blob = L.take_datum(d)
                if blob:
                    self._events.append(SessionData(blob))

    def _frame(self, level: CryptoLevel, data: bytes) -> list[int]:
        """Check message headers before GnuTLS buffers them; the types completed by ``data``.

        GnuTLS waits silently for the body of any header, so a garbage length would stall
        the handshake until its deadline instead of failing it.
        """
        buf = self._rx_partial
        buf += data
        done: list[int] = []
        while len(buf) >= 4:
            htype, length = buf[0], int.from_bytes(buf[1:4], "big")
            if htype not in _ALLOWED_RX_TYPES:
                self._fail_with(
                    PeerRejected(
                        f"unexpected handshake message type {htype} at the {level.name} level",
                        alert=ALERT_UNEXPECTED_MESSAGE,
                    )
                )
            if length > MAX_HANDSHAKE_BYTES:
                self._fail_with(
                    PeerRejected(
                        f"handshake message type {htype} at the {level.name} level claims "
                        f"{length} bytes (limit {MAX_HANDSHAKE_BYTES})",
                        alert=ALERT_DECODE_ERROR,
                    )
                )
            if len(buf) < 4 + length:
                break
            done.append(htype)
            del buf[: 4 + length]
        return done

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

    def _fail(self, ret: int, what: str) -> None:
        err = self._error
        self._error = None
        if isinstance(err, HandshakeError):
            exc = err
        elif err is not None:
            exc = LocalError(f"internal error during {what}: {err!r}", alert=ALERT_INTERNAL_ERROR)
            exc.__cause__ = err
        else:
            exc = self._classify(ret, what)
        self._fail_with(exc)

    def _classify(self, ret: int, what: str) -> HandshakeError:
        msg = L.strerror(ret)
        if ret == L.GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR:
            status = L.gnutls_session_get_verify_cert_status(self._session)
            return PeerRejected(
                f"peer certificate rejected: {self._verify_text(status)}",
                alert=verify_alert(status),
            )
        L.gnutls_alert_send_appropriate(self._session, ret)  # reports the alert via _on_alert
        alert = self._alert
        if ret == L.GNUTLS_E_NO_APPLICATION_PROTOCOL:
            offered = ",".join(a.decode(errors="replace") for a in self.cfg.alpns)
            return PeerRejected(
                f"no common application protocol (we offer {offered})",
                alert=ALERT_NO_APPLICATION_PROTOCOL,
            )
        if ret in (L.GNUTLS_E_MEMORY_ERROR, L.GNUTLS_E_INTERNAL_ERROR):
            return LocalError(f"{what}: {msg}", alert=alert or ALERT_INTERNAL_ERROR)
        return PeerRejected(f"{what}: {msg}", alert=alert)

    def _verify_text(self, status: int) -> str:
        out = L.datum_t()
        if (
            L.gnutls_certificate_verification_status_print(
                status, L.GNUTLS_CRT_X509, C.byref(out), 0
            )
            < 0
        ):
            return f"status 0x{status:x}"
        return L.take_datum(out).decode(errors="replace")

    def _fail_with(self, exc: HandshakeError) -> None:
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
        n = C.c_uint(0)
        arr = L.gnutls_certificate_get_peers(self._session, C.byref(n))
        if not arr:
            return ()
        return tuple(L.datum_bytes(arr[i]) for i in range(n.value))

    def close(self) -> None:
        """Free the session and per-session credentials (idempotent)."""
        if self._session is not None:
            _LIVE.pop(self._session, None)  # before the handle can be reused
            L.gnutls_deinit(self._session)
            self._session = None
        for c in (self._psk_client, self._psk_server):
            if c is not None:
                c.close()
        self._psk_client = self._psk_server = None
        self._keep.clear()

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


# -- process-wide callbacks ----------------------------------------------------------------
# One CFUNCTYPE object per callback for the whole process (never freed, so C can always
# call it); each finds its Engine by the session handle GnuTLS passes. The table holds weak
# references: an Engine dropped without close() is still freed (and deinits its session).
# An Engine is registered from gnutls_init until gnutls_deinit, so a callback always finds
# it; the lookup is inside the try anyway, as no exception may reach C (rule 6).

_LIVE: dict[int, weakref.ReferenceType[Engine]] = {}


def _cb_read(s: int, glevel: int, htype: int, data: int, size: int) -> int:
    try:
        return _LIVE[s]()._on_read(s, glevel, htype, data, size)  # type: ignore[union-attr]
    except BaseException:
        return L.GNUTLS_E_USER_ERROR


def _cb_secret(s: int, glevel: int, rx: int | None, tx: int | None, size: int) -> int:
    try:
        return _LIVE[s]()._on_secret(s, glevel, rx, tx, size)  # type: ignore[union-attr]
    except BaseException:
        return L.GNUTLS_E_USER_ERROR


def _cb_alert(s: int, glevel: int, alevel: int, desc: int) -> int:
    try:
        return _LIVE[s]()._on_alert(s, glevel, alevel, desc)  # type: ignore[union-attr]
    except BaseException:
        return L.GNUTLS_E_USER_ERROR


def _cb_tp_recv(s: int, data: int, size: int) -> int:
    try:
        return _LIVE[s]()._on_tp_recv(s, data, size)  # type: ignore[union-attr]
    except BaseException:
        return L.GNUTLS_E_USER_ERROR


def _cb_tp_send(s: int, buf: int) -> int:
    try:
        return _LIVE[s]()._on_tp_send(s, buf)  # type: ignore[union-attr]
    except BaseException:
        return L.GNUTLS_E_USER_ERROR


def _cb_client_hello(s: int, htype: int, when: int, inc: int, msg: Any) -> int:
    try:
        return _LIVE[s]()._on_client_hello(s, htype, when, inc, msg)  # type: ignore[union-attr]
    except BaseException:
        return L.GNUTLS_E_USER_ERROR


def _cb_verify_optional(s: int) -> int:
    try:
        return _LIVE[s]()._on_verify_optional(s)  # type: ignore[union-attr]
    except BaseException:
        return L.GNUTLS_E_USER_ERROR


def _cb_psk(s: int, username: Any, key: Any) -> int:
    try:
        return _LIVE[s]()._on_psk(s, username, key)  # type: ignore[union-attr]
    except BaseException:
        return L.GNUTLS_E_USER_ERROR


def _cb_keylog(s: int, label: bytes, secret: Any) -> int:
    try:
        return _LIVE[s]()._on_keylog(s, label, secret)  # type: ignore[union-attr]
    except BaseException:
        return L.GNUTLS_E_USER_ERROR


_CB_READ = L.read_func_t(_cb_read)
_CB_SECRET = L.secret_func_t(_cb_secret)
_CB_ALERT = L.alert_read_func_t(_cb_alert)
_CB_TP_RECV = L.ext_recv_func_t(_cb_tp_recv)
_CB_TP_SEND = L.ext_send_func_t(_cb_tp_send)
_CB_CLIENT_HELLO = L.hook_func_t(_cb_client_hello)
_CB_VERIFY_OPTIONAL = L.verify_func_t(_cb_verify_optional)
_CB_PSK = L.psk_server_func2_t(_cb_psk)
_CB_KEYLOG = L.keylog_func_t(_cb_keylog)
