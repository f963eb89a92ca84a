# SPDX-License-Identifier: GPL-2.0-or-later
"""What one handshake is asked to do and what it answers (pure).

:class:`HandshakeRequest` (daemon policy and credentials) and the socket's
:class:`SocketSettings` combine into the engine's :class:`~quichsd.tls.config.EngineConfig`
(:func:`engine_config`); a failed handshake's error becomes the QUIC CONNECTION_CLOSE the
socket is given (:func:`close_code`). :mod:`quichsd.driver` reads the settings from the
socket and runs the handshake; it re-exports these names.
"""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import uapi
from .errors import BadMessage, HandshakeError, ProtocolViolation
from .tls.alerts import alert_name
from .tls.config import Auth, EngineConfig, Keylog, ResumptionKx, Role
from .tls.events import HandshakeComplete
from .uapi import CertRequest, Cipher

if TYPE_CHECKING:
    from .gnutls.creds import AntiReplay, CertificateCredentials, PriorityCache, PskLookup


@dataclass(frozen=True)
class TlsPolicy:
    """Daemon-wide TLS choices (from the config); the socket's cipher hint narrows them."""

    ciphers: tuple[Cipher, ...] = ()
    groups: tuple[str, ...] = ()
    resumption_kx: ResumptionKx = ResumptionKx.PSK_DHE
    session_tickets: bool = True
    early_data: bool = True


@dataclass(frozen=True)
class HandshakeRequest:
    role: Role
    auth: Auth = Auth.X509
    #: client: the server name to send (SNI) and verify; server: unused
    peer_name: str | None = None
    #: client: the server's address, verified when there is no peer_name; None = the
    #: driver asks the socket (getpeername)
    peer_address: str | None = None
    #: client: neither name nor address: verify chain and purpose only (else refuse)
    verify_without_name: bool = False
    #: our certificate credentials (own chain/key and trust anchors)
    x509: CertificateCredentials | None = None
    verify_peer: bool = True
    psk_identity: str | None = None
    psk_key: bytes | None = field(default=None, repr=False)
    psk_lookup: PskLookup | None = None
    #: server: None = take it from the socket's quic_config.certificate_request
    cert_request: CertRequest | None = None
    timeout: float = 10.0
    policy: TlsPolicy = TlsPolicy()
    anti_replay: AntiReplay | None = None
    priorities: PriorityCache | None = None
    #: server ticket key when the socket provides none (userspace stacks may)
    ticket_key: bytes | None = field(default=None, repr=False)
    #: run GnuTLS steps here (they release the GIL) instead of on the event loop
    executor: Executor | None = None
    keylog: Keylog | None = None


@dataclass
class HandshakeResult:
    status: int  # 0 or a positive errno, ready for DONE
    error: HandshakeError | None = None
    info: HandshakeComplete | None = None
    alpn: bytes | None = None
    session_data: bytes | None = field(default=None, repr=False)
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == 0


@dataclass
class SocketSettings:
    """What the kernel consumer configured on the socket (read by the driver)."""

    alpns: tuple[bytes, ...]
    config: uapi.QuicConfig
    ticket: bytes
    local_tp: bytes


#: quic_config.payload_cipher_type values accepted (0 = no hint), and certificate_request
CIPHER_HINTS = frozenset({0, *(int(c) for c in Cipher)})
CERT_REQUESTS = {int(c): c for c in CertRequest}


def engine_config(
    req: HandshakeRequest, st: SocketSettings, peer_address: str | None = None
) -> EngineConfig:
    """Combine the request (daemon policy + credentials) with the socket's settings;
    ``peer_address`` (the socket's peer) stands in for a request without one."""
    pol = req.policy
    ciphers = pol.ciphers
    if st.config.payload_cipher_type:
        ciphers = (Cipher(st.config.payload_cipher_type),)
    client = req.role is Role.CLIENT
    session_data = st.ticket if client and st.ticket else None
    ticket_key: bytes | None = None
    if not client and pol.session_tickets:
        ticket_key = st.ticket if len(st.ticket) == uapi.QUIC_TICKET_MASTER_KEY_LEN else None
        ticket_key = ticket_key or req.ticket_key
    cert_request = req.cert_request
    if cert_request is None:
        cert_request = CERT_REQUESTS[st.config.certificate_request]
    return EngineConfig(
        role=req.role,
        auth=req.auth,
        alpns=st.alpns,
        ciphers=ciphers,
        groups=pol.groups,
        transport_params=st.local_tp,
        peer_name=req.peer_name,
        peer_address=req.peer_address or peer_address,
        verify_without_name=req.verify_without_name,
        verify_peer=req.verify_peer,
        cert_request=cert_request,
        x509=req.x509,
        psk_identity=req.psk_identity,
        psk_key=req.psk_key,
        psk_lookup=req.psk_lookup,
        session_data=session_data,
        ticket_key=ticket_key,
        early_data=pol.early_data,
        resumption_kx=pol.resumption_kx,
        anti_replay=req.anti_replay,
        priorities=req.priorities,
        keylog=req.keylog,
    )


def close_code(exc: HandshakeError) -> uapi.ConnectionClose | None:
    """The QUIC CONNECTION_CLOSE for a failed handshake (RFC 9001 §4.8), if any."""
    if exc.alert is not None:
        name = alert_name(exc.alert)
        phrase = f"TLS alert {exc.alert}: {name}".encode()
        return uapi.ConnectionClose(uapi.QUIC_TRANSPORT_ERROR_CRYPTO + exc.alert, 0, phrase)
    if isinstance(exc, ProtocolViolation | BadMessage):
        return uapi.ConnectionClose(
            uapi.QUIC_TRANSPORT_ERROR_PROTOCOL_VIOLATION, 0, str(exc)[:60].encode()
        )
    return None
