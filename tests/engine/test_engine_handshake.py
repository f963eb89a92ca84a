# SPDX-License-Identifier: GPL-2.0-or-later
"""Full x509 handshakes: certificates, chains, secrets, transport parameters, ALPN, order."""

from __future__ import annotations

import dataclasses

import pytest
from engine_helpers import (
    CLIENT_TP,
    HT_CERTIFICATE,
    HT_CLIENT_HELLO,
    HT_ENCRYPTED_EXTENSIONS,
    HT_FINISHED,
    HT_SERVER_HELLO,
    SERVER_TP,
    Pair,
    Run,
    Transcript,
    creds,
    parse_client_hello,
    parse_encrypted_extensions,
)
from pki import Pki

from quichsd.tls.engine import EngineConfig
from quichsd.tls.events import (
    AlpnSelected,
    CryptoData,
    HandshakeComplete,
    PeerTransportParams,
    Secret,
    SessionData,
)
from quichsd.uapi import CryptoLevel

TP_EXT = 0x39


def assert_secrets_pair(t: Transcript, levels: set[CryptoLevel]) -> None:
    c, s = t.secrets("client"), t.secrets("server")
    assert {lv for lv, _ in c} == levels
    assert {lv for lv, _ in s} == levels
    for lv in levels - {CryptoLevel.EARLY}:
        assert c[(lv, True)].secret == s[(lv, False)].secret, f"{lv.name} client->server"
        assert c[(lv, False)].secret == s[(lv, True)].secret, f"{lv.name} server->client"
        assert c[(lv, True)].secret != c[(lv, False)].secret
    if CryptoLevel.EARLY in levels:  # 0-RTT is client -> server only
        assert set(c) >= {(CryptoLevel.EARLY, True)} and (CryptoLevel.EARLY, False) not in c
        assert (CryptoLevel.EARLY, True) not in s
        assert c[(CryptoLevel.EARLY, True)].secret == s[(CryptoLevel.EARLY, False)].secret


@pytest.mark.parametrize("which", ["p256", "rsa", "chain"])
def test_full_handshake(
    which: str, pki: Pki, client_cfg: EngineConfig, server_cfg: EngineConfig, run: Run
) -> None:
    leaf, chain = {
        "p256": (pki.server, None),
        "rsa": (pki.server_rsa, None),
        "chain": (pki.server_chained, pki.chain_pem()),
    }[which]
    scfg = dataclasses.replace(server_cfg, x509=creds(leaf, chain=chain))
    t = run(client_cfg, scfg)
    assert not t.errors
    cdone, sdone = t.complete("client"), t.complete("server")
    # the client verified name + chain (it trusts only the root) and saw what was sent
    expected_chain = (leaf.cert_der,) + ((pki.inter.cert_der,) if chain else ())
    assert cdone.peer_certificates == expected_chain
    assert sdone.peer_certificates == ()
    assert not cdone.resumed and not sdone.resumed
    assert cdone.cipher == sdone.cipher and cdone.group == sdone.group
    assert_secrets_pair(t, {CryptoLevel.HANDSHAKE, CryptoLevel.APP})
    # transport parameters cross with their exact bytes, once
    assert t.of("client", PeerTransportParams) == [PeerTransportParams(SERVER_TP)]
    assert t.of("server", PeerTransportParams) == [PeerTransportParams(CLIENT_TP)]
    ch = [b for lv, ht, b in t.messages("client") if ht == HT_CLIENT_HELLO]
    assert parse_client_hello(ch[0]).extensions[TP_EXT] == CLIENT_TP
    ee = [b for lv, ht, b in t.messages("server") if ht == HT_ENCRYPTED_EXTENSIONS]
    assert parse_encrypted_extensions(ee[0])[TP_EXT] == SERVER_TP
    # ALPN: the server picks from its list (smb, h3) the client's only offer
    assert t.of("client", AlpnSelected) == [AlpnSelected(b"h3")]
    assert t.of("server", AlpnSelected) == [AlpnSelected(b"h3")]
    assert cdone.alpn == sdone.alpn == b"h3"
    if which == "chain":
        certs = [b for lv, ht, b in t.messages("server") if ht == HT_CERTIFICATE]
        assert len(certs) == 1 and pki.inter.cert_der in certs[0]


def test_message_levels(client_cfg: EngineConfig, server_cfg: EngineConfig, run: Run) -> None:
    t = run(client_cfg, server_cfg)
    kinds = [(lv, ht) for lv, ht, _ in t.messages("server")]
    assert kinds[0] == (CryptoLevel.INITIAL, HT_SERVER_HELLO)
    assert kinds[1] == (CryptoLevel.HANDSHAKE, HT_ENCRYPTED_EXTENSIONS)
    assert (CryptoLevel.HANDSHAKE, HT_FINISHED) in kinds
    assert [(lv, ht) for lv, ht, _ in t.messages("client")] == [
        (CryptoLevel.INITIAL, HT_CLIENT_HELLO),
        (CryptoLevel.HANDSHAKE, HT_FINISHED),
    ]


def test_event_order(client_cfg: EngineConfig, server_cfg: EngineConfig, run: Run) -> None:
    """The orders the socket driver relies on, on both sides."""
    t = run(client_cfg, server_cfg)
    assert not t.errors
    for side in ("client", "server"):
        ev = t.events(side)
        for lv in (CryptoLevel.HANDSHAKE, CryptoLevel.APP):
            sends = [i for i, e in enumerate(ev) if isinstance(e, CryptoData) and e.level == lv]
            if sends:  # the key to send at a level is installed before data at that level
                tx = t.index(
                    side, lambda e, lv=lv: isinstance(e, Secret) and e.level == lv and e.send
                )
                assert tx < sends[0], f"{side}: {lv.name} data before its send secret"
        done = t.index(side, lambda e: isinstance(e, HandshakeComplete))
        assert t.index(side, lambda e: isinstance(e, PeerTransportParams)) < done
        assert t.index(side, lambda e: isinstance(e, AlpnSelected)) < done
        # completion means both APP secrets are out
        assert (
            t.index(
                side, lambda e: isinstance(e, Secret) and e.level == CryptoLevel.APP and not e.send
            )
            < done
        )
        assert (
            t.index(side, lambda e: isinstance(e, Secret) and e.level == CryptoLevel.APP and e.send)
            < done
        )
    # the client's HANDSHAKE rx key is out before it has to read the server's EE
    cev = t.events("client")
    hs_rx = t.index(
        "client",
        lambda e: isinstance(e, Secret) and e.level == CryptoLevel.HANDSHAKE and not e.send,
    )
    fin = t.index(
        "client", lambda e: isinstance(e, CryptoData) and e.level == CryptoLevel.HANDSHAKE
    )
    assert hs_rx < fin
    # SessionData comes after completion, caused by the server's APP-level NewSessionTicket
    sd = [st for st in t.steps if st.side == "client" and isinstance(st.event, SessionData)]
    assert len(sd) == 1
    assert cev.index(sd[0].event) > t.index("client", lambda e: isinstance(e, HandshakeComplete))
    assert t.wire[sd[0].cause][0] == "server" and t.wire[sd[0].cause][1] == CryptoLevel.APP


def test_secret_repr_hides_key_material(
    client_cfg: EngineConfig, server_cfg: EngineConfig, run: Run
) -> None:
    t = run(client_cfg, server_cfg)
    for s in t.of("client", Secret) + t.of("server", Secret):
        assert s.secret.hex() not in repr(s) and repr(s.secret) not in repr(s)
        assert f"<{len(s.secret)} bytes>" in repr(s)


def test_alpn_server_preference(
    client_cfg: EngineConfig, server_cfg: EngineConfig, run: Run
) -> None:
    # client prefers h3, server lists smb first: GnuTLS 3.7.9 follows the client's order
    t = run(client_cfg, server_cfg, alpns=(b"h3", b"smb"))
    assert t.complete("client").alpn == t.complete("server").alpn
    assert t.of("client", AlpnSelected) == t.of("server", AlpnSelected)
    assert t.complete("server").alpn in (b"h3", b"smb")


def test_hello_retry_request(client_cfg: EngineConfig, server_cfg: EngineConfig, run: Run) -> None:
    """GnuTLS sends one NIST-curve key share (P-256); a P-384-only server asks again (HRR)."""
    t = run(
        client_cfg,
        dataclasses.replace(server_cfg, groups=("SECP384R1",)),
        groups=("SECP256R1", "SECP384R1"),
    )
    assert not t.errors
    hellos = [ht for lv, ht, _ in t.messages("client") if ht == HT_CLIENT_HELLO]
    assert len(hellos) == 2
    assert t.complete("client").group == t.complete("server").group == "SECP384R1"
    assert_secrets_pair(t, {CryptoLevel.HANDSHAKE, CryptoLevel.APP})


def test_fragmented_delivery(
    client_cfg: EngineConfig, server_cfg: EngineConfig, pair: Pair
) -> None:
    """CRYPTO data may arrive in any split; 7-byte pieces still complete the handshake."""
    c, s = pair(client_cfg, server_cfg)
    c.start()
    out = {"c": c.events(), "s": []}
    got: dict[str, list[object]] = {"c": list(out["c"]), "s": []}
    for _ in range(10):
        for src, dst, name in (("c", s, "s"), ("s", c, "c")):
            for e in out[src]:
                if isinstance(e, CryptoData):
                    for i in range(0, len(e.data), 7):
                        dst.receive(e.level, e.data[i : i + 7])
            out[src] = []
            out[name] = dst.events()
            got[name] += out[name]
    assert c.complete and s.complete
    assert sum(isinstance(e, SessionData) for e in got["c"]) == 1
    assert sum(isinstance(e, HandshakeComplete) for e in got["s"]) == 1
