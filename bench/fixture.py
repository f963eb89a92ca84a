# SPDX-License-Identifier: GPL-2.0-or-later
"""The daemon's configuration, built once per process, and memory socket pairs to run on.

Everything shared is made once, as the daemon does: certificate credentials (server
chain + key, client trust store), one PriorityCache, one AntiReplay, one ticket key. The
TLS policy comes from the shipped etc/quichsd/config.yaml (ciphers, groups X25519 first,
psk_dhe resumption, tickets, early data). The server certificate is the test PKI's P-256
ECDSA leaf, written to PEM files so the C floor loads the very same files.
"""

from __future__ import annotations

import sys
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from pathlib import Path

from quichsd import uapi
from quichsd.config import load_config
from quichsd.driver import HandshakeRequest, TlsPolicy
from quichsd.gnutls.creds import (
    AntiReplay,
    CertificateCredentials,
    PriorityCache,
    generate_ticket_key,
)
from quichsd.tls.engine import EngineConfig, ResumptionKx, Role, priority_string
from quichsd.uapi import Cipher
from quichsd.userspace.memory import MemoryQuicSocket, MemorySettings, memory_pair

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
CONFIG = ROOT / "etc" / "quichsd" / "config.yaml"
SERVER_NAME = "server.test"
ALPN = b"smb"
TOKEN_CIPHER = {
    "AES-128-GCM": Cipher.AES_GCM_128,
    "AES-256-GCM": Cipher.AES_GCM_256,
    "CHACHA20-POLY1305": Cipher.CHACHA20_POLY1305,
    "AES-128-CCM": Cipher.AES_CCM_128,
}


def write_pki(d: Path = OUT / "pki") -> dict[str, Path]:
    """A fresh test PKI (tests/pki.py); returns the PEM paths of server cert/key and CA."""
    sys.path.insert(0, str(ROOT / "tests"))
    from pki import make_pki  # type: ignore[import-not-found]

    p = make_pki()
    d.mkdir(parents=True, exist_ok=True)
    paths = {"cert": d / "server.pem", "key": d / "server.key", "ca": d / "ca.pem"}
    paths["cert"].write_bytes(p.server.cert_pem)
    paths["key"].write_bytes(p.server.key_pem)
    paths["key"].chmod(0o600)
    paths["ca"].write_bytes(p.ca.cert_pem)
    return paths


def daemon_policy() -> TlsPolicy:
    tls = load_config(str(CONFIG)).tls
    return TlsPolicy(
        ciphers=tuple(TOKEN_CIPHER[c] for c in tls.ciphers),
        groups=tuple(tls.groups),
        resumption_kx=ResumptionKx(tls.resumption_key_exchange),
        session_tickets=tls.session_tickets,
        early_data=tls.early_data,
    )


def priority_strings(policy: TlsPolicy) -> dict[str, str]:
    """What quichsd's engine will hand GnuTLS, per role (passed to the C floor verbatim)."""
    out = {}
    for role in Role:
        cfg = EngineConfig(
            role=role,
            ciphers=policy.ciphers,
            groups=policy.groups,
            resumption_kx=policy.resumption_kx,
        )
        out[role.value] = priority_string(cfg)
    return out


@dataclass
class Daemon:
    """Process-wide state, as the daemon holds it."""

    policy: TlsPolicy
    server_creds: CertificateCredentials
    client_creds: CertificateCredentials
    priorities: PriorityCache
    anti_replay: AntiReplay
    ticket_key: bytes
    server_req: HandshakeRequest
    client_req: HandshakeRequest

    def with_executor(self, ex: Executor | None) -> Daemon:
        return replace(
            self,
            server_req=replace(self.server_req, executor=ex),
            client_req=replace(self.client_req, executor=ex),
        )

    def pair(
        self, session_data: bytes = b"", receive_ticket: bool = True
    ) -> tuple[MemoryQuicSocket, MemoryQuicSocket]:
        """(client, server) sockets as the kernel would configure them."""
        cconf = uapi.QuicConfig(receive_session_ticket=1 if receive_ticket else 0)
        return memory_pair(
            MemorySettings(alpns=(ALPN,), config=cconf, ticket=session_data),
            MemorySettings(alpns=(ALPN,), ticket=self.ticket_key),
        )


def load_daemon(pki: dict[str, Path]) -> Daemon:
    policy = daemon_policy()
    sc = CertificateCredentials()
    sc.set_key_pair(pki["cert"].read_bytes(), pki["key"].read_bytes())
    cc = CertificateCredentials()
    cc.set_trust(pki["ca"].read_bytes())
    prio = PriorityCache()
    ar = AntiReplay()
    common = {"policy": policy, "priorities": prio, "timeout": 60.0}
    return Daemon(
        policy=policy,
        server_creds=sc,
        client_creds=cc,
        priorities=prio,
        anti_replay=ar,
        ticket_key=generate_ticket_key(),
        server_req=HandshakeRequest(Role.SERVER, x509=sc, anti_replay=ar, **common),  # type: ignore[arg-type]
        client_req=HandshakeRequest(
            Role.CLIENT,
            peer_name=SERVER_NAME,
            x509=cc,
            anti_replay=ar,
            **common,  # type: ignore[arg-type]
        ),
    )
