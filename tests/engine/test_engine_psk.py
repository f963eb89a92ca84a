# SPDX-License-Identifier: GPL-2.0-or-later
"""External PSK: success, unknown identity, wrong key."""

from __future__ import annotations

import dataclasses
import errno

import pytest
from engine_helpers import HT_CERTIFICATE, Run

from quichsd.errors import KeyRejected, PeerRejected
from quichsd.tls.engine import Auth, EngineConfig, ResumptionKx, priority_string
from quichsd.tls.events import AlertSent, HandshakeComplete, Secret
from quichsd.uapi import CryptoLevel

KEYS = {"alice": bytes(range(32)), "bob@example": bytes(range(100, 148))}


@pytest.fixture
def psk_client(client_cfg: EngineConfig) -> EngineConfig:
    return dataclasses.replace(
        client_cfg, auth=Auth.PSK, x509=None, psk_identity="alice", psk_key=KEYS["alice"]
    )


@pytest.fixture
def psk_server(server_cfg: EngineConfig) -> EngineConfig:
    return dataclasses.replace(server_cfg, auth=Auth.PSK, x509=None, psk_lookup=KEYS.get)


@pytest.mark.parametrize("ident", sorted(KEYS))
def test_psk_handshake(
    ident: str, psk_client: EngineConfig, psk_server: EngineConfig, run: Run
) -> None:
    t = run(psk_client, psk_server, psk_identity=ident, psk_key=KEYS[ident])
    assert not t.errors
    c, s = t.complete("client"), t.complete("server")
    assert s.psk_identity == ident
    assert c.peer_certificates == s.peer_certificates == ()
    assert not any(ht == HT_CERTIFICATE for _, ht, _ in t.messages("server"))
    assert c.alpn == s.alpn == b"h3"
    # external PSK uses psk_dhe_ke by default: an (EC)DHE group, so forward secrecy
    assert c.group is not None and c.group == s.group
    cs, ss = t.secrets("client"), t.secrets("server")
    for lv in (CryptoLevel.HANDSHAKE, CryptoLevel.APP):
        assert cs[(lv, True)].secret == ss[(lv, False)].secret
        assert cs[(lv, False)].secret == ss[(lv, True)].secret


def test_unknown_identity_fails_115(
    psk_client: EngineConfig, psk_server: EngineConfig, run: Run
) -> None:
    t = run(psk_client, psk_server, psk_identity="mallory")
    err = t.errors["server"]
    assert type(err) is KeyRejected and err.status == errno.EKEYREJECTED
    assert err.alert == 115  # unknown_psk_identity
    assert "mallory" in err.reason
    assert t.of("server", AlertSent) == [AlertSent(115)]
    assert not t.of("server", Secret) and not t.of("server", HandshakeComplete)
    assert "client" not in t.errors  # the client learns of it from CONNECTION_CLOSE


def test_wrong_key_fails(psk_client: EngineConfig, psk_server: EngineConfig, run: Run) -> None:
    """The server cannot verify the binder. GnuTLS 3.7.9 sends illegal_parameter (47);
    RFC 8446 §6.2 would call it decrypt_error (51)."""
    t = run(psk_client, psk_server, psk_key=bytes(32))
    err = t.errors["server"]
    assert type(err) is PeerRejected and err.status == errno.EACCES
    assert err.alert == 47
    assert "illegal parameter" in err.reason
    assert t.of("server", AlertSent) == [AlertSent(47)]
    assert not t.of("server", Secret)


def test_psk_ke_policy_and_a_tlshd_style_client(
    psk_client: EngineConfig, psk_server: EngineConfig, run: Run
) -> None:
    """resumption_key_exchange psk on both sides gives psk_ke (no group); a client
    offering psk_ke only (tlshd's +PSK) is still served by our default server."""
    ke = dataclasses.replace(psk_client, resumption_kx=ResumptionKx.PSK)
    t = run(
        ke,
        dataclasses.replace(psk_server, resumption_kx=ResumptionKx.PSK),
        psk_identity="alice",
        psk_key=KEYS["alice"],
    )
    assert not t.errors and t.complete("client").group is None
    assert "+PSK:+ECDHE-PSK" in priority_string(ke)
    t = run(ke, psk_server, psk_identity="alice", psk_key=KEYS["alice"])
    assert not t.errors, t.errors
    assert t.complete("server").psk_identity == "alice"
