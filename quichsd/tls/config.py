# SPDX-License-Identifier: GPL-2.0-or-later
"""What one handshake asks of the TLS engine, and the GnuTLS priority string for it (pure).

:class:`EngineConfig` is the engine's whole input apart from the peer's bytes: role,
authentication, ALPN, ciphers and groups, credentials, resumption and 0-RTT choices.
:func:`priority_string` derives the GnuTLS priority string from it; rule 1 of
:mod:`quichsd.tls.engine` (``%DISABLE_TLS13_COMPAT_MODE`` always) holds here.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..uapi import CertRequest, Cipher

if TYPE_CHECKING:
    from ..gnutls.creds import AntiReplay, CertificateCredentials, PriorityCache, PskLookup

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
    #: client: SNI and the name verified in the server certificate (see .peername)
    peer_name: str | None = None
    #: client: the server's IP address, verified (IP SAN) when there is no peer_name
    peer_address: str | None = None
    #: client: with neither, verify the chain and purpose only instead of refusing
    verify_without_name: bool = False
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
    # Key exchange with a PSK (resumption tickets and external PSKs alike): psk_dhe_ke,
    # forward secret, is preferred unless the policy says psk_ke. A server also accepts
    # psk_ke-only clients (tlshd's priority string offers +PSK only); an external-PSK
    # client offers both modes, resuming clients only psk_dhe_ke.
    # GnuTLS re-enables TLS 1.2 cipher suites (ECDHE-ECDSA, ECDHE-RSA...) in the ClientHello
    # when a key-exchange token follows NORMAL, even with TLS 1.3 alone enabled: -KX-ALL
    # first, so the PSK tokens choose only the psk_key_exchange_modes (QUIC is TLS 1.3 only)
    parts.append("-KX-ALL")
    if resumption_kx is ResumptionKx.PSK:
        parts += ["+PSK", "+ECDHE-PSK", "+DHE-PSK"]
    elif role is Role.SERVER or auth is Auth.PSK:
        parts += ["+ECDHE-PSK", "+DHE-PSK", "+PSK"]
    else:
        parts += ["+ECDHE-PSK", "+DHE-PSK"]
    return ":".join(parts)
