# SPDX-License-Identifier: GPL-2.0-or-later
"""Setting up one GnuTLS session for an :class:`~quichsd.tls.config.EngineConfig`.

Init flags, priorities, credentials per role and authentication, ALPN, the QUIC
transport-parameters extension, the process-wide callbacks, and the server's session
tickets and 0-RTT (rule 4 of :mod:`quichsd.tls.engine`). Everything C keeps pointing at
after these calls is held in a :class:`SessionResources` that the Engine frees only after
gnutls_deinit.
"""

from __future__ import annotations

import ctypes as C
import functools
import threading
from typing import Any

from ..errors import LocalError, PeerRejected
from ..gnutls import _lib as L
from ..gnutls.creds import PriorityCache, PskClientCredentials, PskServerCredentials
from ..uapi import CertRequest
from .alerts import ALERT_BAD_CERTIFICATE
from .callbacks import (
    CB_ALERT,
    CB_CLIENT_HELLO,
    CB_KEYLOG,
    CB_PSK,
    CB_READ,
    CB_SECRET,
    CB_TP_RECV,
    CB_TP_SEND,
    CB_VERIFY_OPTIONAL,
)
from .classify import verify_error
from .config import Auth, EngineConfig, Role, priority_string
from .peername import PeerIdentity, peer_identity

TP_EXTENSION = 0x39

_DEFAULT_PRIORITIES = PriorityCache()


class SessionResources:
    """Per-session credentials and C memory that must outlive the session's use of them."""

    __slots__ = ("keep", "peer", "psk_client", "psk_server", "session_data_rejected")

    def __init__(self) -> None:
        self.keep: list[Any] = []
        #: client: the identity the server certificate is verified against
        self.peer: PeerIdentity | None = None
        self.psk_client: PskClientCredentials | None = None
        self.psk_server: PskServerCredentials | None = None
        #: client given session data: GnuTLS refused it (a full handshake follows)
        self.session_data_rejected: bool | None = None

    def close(self) -> None:
        """Free them (idempotent); only after gnutls_deinit of the session."""
        for c in (self.psk_client, self.psk_server):
            if c is not None:
                c.close()
        self.psk_client = self.psk_server = None
        self.keep.clear()


def init_flags(cfg: EngineConfig) -> int:
    """The gnutls_init flags for ``cfg``."""
    if cfg.role is Role.CLIENT:
        flags = L.GNUTLS_CLIENT | L.GNUTLS_NO_END_OF_EARLY_DATA
        if cfg.early_data:
            flags |= L.GNUTLS_ENABLE_EARLY_DATA
        return flags
    flags = L.GNUTLS_SERVER | L.GNUTLS_NO_AUTO_SEND_TICKET | L.GNUTLS_NO_END_OF_EARLY_DATA
    if cfg.early_data and cfg.ticket_key and cfg.anti_replay is not None:
        flags |= L.GNUTLS_ENABLE_EARLY_DATA
    return flags


def configure(s: int, cfg: EngineConfig, res: SessionResources) -> None:
    """Configure the fresh session ``s`` for ``cfg``; what C keeps using goes into ``res``."""
    prio = (cfg.priorities or _DEFAULT_PRIORITIES).get(priority_string(cfg))
    L.check(L.gnutls_priority_set(s, prio), "set priority")
    _set_credentials(s, cfg, res)
    if cfg.alpns:
        arr, _bufs = _alpn_array(cfg.alpns)  # GnuTLS copies the protocols
        ret = L.gnutls_alpn_set_protocols(s, arr, len(cfg.alpns), L.GNUTLS_ALPN_MANDATORY)
        L.check(ret, "set ALPN protocols")
    L.gnutls_handshake_set_read_function(s, CB_READ)
    L.gnutls_handshake_set_secret_function(s, CB_SECRET)
    L.gnutls_alert_set_read_function(s, CB_ALERT)
    ret = L.gnutls_session_ext_register(
        s,
        b"QUIC Transport Parameters",
        TP_EXTENSION,
        L.GNUTLS_EXT_TLS,
        CB_TP_RECV,
        CB_TP_SEND,
        None,
        None,
        None,
        L.GNUTLS_EXT_FLAG_TLS | L.GNUTLS_EXT_FLAG_CLIENT_HELLO | L.GNUTLS_EXT_FLAG_EE,
    )
    L.check(ret, "register transport-parameters extension")
    if cfg.keylog is not None:
        L.gnutls_session_set_keylog_function(s, CB_KEYLOG)
    if cfg.role is Role.CLIENT:
        _configure_client(s, cfg, res)
    else:
        _configure_server(s, cfg, res)


def _set_credentials(s: int, cfg: EngineConfig, res: SessionResources) -> None:
    if cfg.auth is Auth.PSK:
        if cfg.role is Role.CLIENT:
            if cfg.psk_identity is None or cfg.psk_key is None:
                raise LocalError("PSK client needs an identity and a key")
            res.psk_client = PskClientCredentials(cfg.psk_identity, cfg.psk_key)
            L.check(
                L.gnutls_credentials_set(s, L.GNUTLS_CRD_PSK, res.psk_client.handle),
                "set PSK credentials",
            )
        else:
            if cfg.psk_lookup is None:
                raise LocalError("PSK server needs a key lookup")
            res.psk_server = PskServerCredentials(CB_PSK)
            L.check(
                L.gnutls_credentials_set(s, L.GNUTLS_CRD_PSK, res.psk_server.handle),
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


def _configure_client(s: int, cfg: EngineConfig, res: SessionResources) -> None:
    verify = cfg.x509 is not None and cfg.verify_peer and cfg.auth is not Auth.PSK
    peer = peer_identity(
        cfg.peer_name,
        cfg.peer_address,
        allow_nameless=cfg.verify_without_name or not verify,
    )
    if peer.dns is not None:  # RFC 6066 §3: no SNI for IP literals; length in bytes
        L.check(L.gnutls_server_name_set(s, L.GNUTLS_NAME_DNS, peer.dns, len(peer.dns)), "set SNI")
    if verify:
        set_verify(s, res, L.GNUTLS_KP_TLS_WWW_SERVER, peer)
        res.peer = peer
    if cfg.session_data:
        ret = L.gnutls_session_set_data(s, cfg.session_data, len(cfg.session_data))
        # corrupt or foreign session data: fall back to a full handshake
        res.session_data_rejected = ret < 0


def verification_data(purpose: bytes, peer: PeerIdentity | None = None) -> tuple[Any, list[Any]]:
    """A ``gnutls_typed_vdata_st[]`` asking for the key purpose ``purpose`` (an EKU OID)
    and the peer's DNS name or IP address, if any; and the buffers it points at (GnuTLS
    copies neither: keep both as long as the session may verify)."""
    entries = [(L.GNUTLS_DT_KEY_PURPOSE_OID, purpose)]
    if peer is not None and peer.dns is not None:
        entries.append((L.GNUTLS_DT_DNS_HOSTNAME, peer.dns))
    elif peer is not None and peer.ip is not None:
        entries.append((L.GNUTLS_DT_IP_ADDRESS, peer.ip))
    bufs = []
    arr = (L.typed_vdata_st * len(entries))()
    for i, (kind, value) in enumerate(entries):
        buf = C.create_string_buffer(value, len(value) + 1)  # NUL-terminated for strings
        bufs.append(buf)
        arr[i].type, arr[i].data, arr[i].size = kind, C.addressof(buf), len(value)
    return arr, bufs


@functools.lru_cache(maxsize=256)
def _shared_verification_data(purpose: bytes, peer: PeerIdentity | None) -> tuple[Any, list[Any]]:
    """:func:`verification_data`, built once per purpose and peer: GnuTLS only reads it,
    so sessions share it (each also keeps a reference while it may verify)."""
    return verification_data(purpose, peer)


def set_verify(s: int, res: SessionResources, purpose: bytes, peer: PeerIdentity | None) -> None:
    """GnuTLS verifies the peer's chain, ``purpose`` and ``peer``'s name during the
    handshake (a failure is GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR)."""
    arr, bufs = _shared_verification_data(purpose, peer)
    res.keep += [arr, bufs]
    L.gnutls_session_set_verify_cert2(s, arr, len(arr), 0)


def configure_client_certificates(s: int, cfg: EngineConfig, res: SessionResources) -> None:
    """Server: ask for a client certificate as ``cfg.cert_request`` says and verify one
    (chain and clientAuth purpose), on QUIC and TCP alike."""
    if cfg.x509 is not None and cfg.auth is not Auth.PSK:
        L.gnutls_certificate_server_set_request(s, int(cfg.cert_request))
        if cfg.cert_request is CertRequest.REQUIRE and cfg.verify_peer:
            # a client certificate: the chain and the clientAuth purpose (no name)
            set_verify(s, res, L.GNUTLS_KP_TLS_WWW_CLIENT, None)
        elif cfg.cert_request is CertRequest.REQUEST and cfg.verify_peer:
            # GnuTLS's own check fails when no certificate came: the session's
            # on_verify_optional verifies only one sent (verify_optional_client_cert)
            L.gnutls_session_set_verify_function(s, CB_VERIFY_OPTIONAL)


def peer_certificates(s: int) -> tuple[bytes, ...]:
    """The peer's certificate chain (DER), as it sent it; () when it sent none."""
    n = C.c_uint(0)
    arr = L.gnutls_certificate_get_peers(s, C.byref(n))
    if not arr:
        return ()
    return tuple(L.datum_bytes(arr[i]) for i in range(n.value))


def verify_optional_client_cert(s: int) -> None:
    """Server, client certificate requested: verify the one the client sent (chain and
    clientAuth purpose); none sent is fine. Raises PeerRejected."""
    if not peer_certificates(s):
        return
    status = C.c_uint(0)
    data, _bufs = verification_data(L.GNUTLS_KP_TLS_WWW_CLIENT)
    ret = L.gnutls_certificate_verify_peers(s, data, len(data), C.byref(status))
    if ret < 0:
        raise PeerRejected(
            f"peer certificate could not be verified: {L.strerror(ret)}",
            alert=ALERT_BAD_CERTIFICATE,
        )
    if status.value:
        raise verify_error(status.value)


def keylog_line(s: int, label: bytes, secret: Any) -> str:
    """One NSS key log line for GnuTLS's keylog callback arguments."""
    client, server = L.datum_t(), L.datum_t()
    L.gnutls_session_get_random(s, C.byref(client), C.byref(server))
    return f"{label.decode()} {L.datum_bytes(client).hex()} {L.datum_bytes(secret.contents).hex()}"


def _configure_server(s: int, cfg: EngineConfig, res: SessionResources) -> None:
    configure_client_certificates(s, cfg, res)
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
            cfg.anti_replay.enable(s)
    L.gnutls_handshake_set_hook_function(
        s, L.GNUTLS_HANDSHAKE_CLIENT_HELLO, L.GNUTLS_HOOK_BOTH, CB_CLIENT_HELLO
    )


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
