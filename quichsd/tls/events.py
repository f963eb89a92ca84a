# SPDX-License-Identifier: GPL-2.0-or-later
"""Events the sans-IO TLS engine emits, in the order they must be acted on. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..uapi import Cipher, CryptoLevel


@dataclass(frozen=True, slots=True)
class CryptoData:
    """A handshake message to send at ``level`` (kernel numbering)."""

    level: CryptoLevel
    data: bytes


@dataclass(frozen=True, slots=True)
class Secret:
    """A traffic secret to install; ``send`` is True for the transmit direction."""

    level: CryptoLevel
    send: bool
    cipher: Cipher
    secret: bytes = field(repr=False)

    def __repr__(self) -> str:  # never show key material
        return (
            f"Secret(level={self.level.name}, send={self.send}, cipher={self.cipher.name}, "
            f"secret=<{len(self.secret)} bytes>)"
        )


@dataclass(frozen=True, slots=True)
class PeerTransportParams:
    """The peer's raw transport-parameters extension (0x39) body."""

    data: bytes


@dataclass(frozen=True, slots=True)
class AlpnSelected:
    alpn: bytes


@dataclass(frozen=True, slots=True)
class AlertSent:
    """A fatal TLS alert we sent; the QUIC error is ``0x100 + description``."""

    description: int


@dataclass(frozen=True, slots=True)
class HandshakeComplete:
    """The handshake finished (this side has both APP secrets)."""

    cipher: Cipher
    group: str | None
    alpn: bytes | None
    resumed: bool
    early_data_accepted: bool
    #: the peer's certificate chain, DER, leaf first (empty for PSK / no client cert)
    peer_certificates: tuple[bytes, ...] = field(default=(), repr=False)
    #: PSK identity the peer used (server side, external PSK)
    psk_identity: str | None = None


@dataclass(frozen=True, slots=True)
class SessionData:
    """Client: resumption data (``gnutls_session_get_data2``) after a NewSessionTicket."""

    data: bytes = field(repr=False)


Event = (
    CryptoData
    | Secret
    | PeerTransportParams
    | AlpnSelected
    | AlertSent
    | HandshakeComplete
    | SessionData
)
