# SPDX-License-Identifier: GPL-2.0-or-later
"""Failures map to an alert and a clear error; data after a failure re-raises."""

from __future__ import annotations

import dataclasses
import errno

import pytest
from engine_helpers import Pair, Run, creds, roundtrip
from pki import Pki

from quichsd.errors import HandshakeError, MissingTransportParams, PeerRejected, ProtocolViolation
from quichsd.tls.engine import MAX_HANDSHAKE_BYTES, Engine, EngineConfig
from quichsd.tls.events import AlertSent, CryptoData, HandshakeComplete, Secret
from quichsd.uapi import CryptoLevel


def test_alpn_mismatch_120(client_cfg: EngineConfig, server_cfg: EngineConfig, run: Run) -> None:
    t = run(client_cfg, dataclasses.replace(server_cfg, alpns=(b"smb",)), alpns=(b"h3",))
    err = t.errors["server"]
    assert type(err) is PeerRejected and err.status == errno.EACCES and err.alert == 120
    assert "no common application protocol" in err.reason and "smb" in err.reason
    assert t.of("server", AlertSent) == [AlertSent(120)]
    assert not t.of("server", CryptoData) and not t.of("server", Secret)


@pytest.mark.parametrize(
    "cert,alert,text",
    [
        ("expired", 45, "expired"),
        ("rogue", 48, "issuer is unknown"),
        ("wrong_name", 42, "name in the certificate does not match"),
    ],
)
def test_bad_server_certificate(
    cert: str,
    alert: int,
    text: str,
    pki: Pki,
    client_cfg: EngineConfig,
    server_cfg: EngineConfig,
    run: Run,
) -> None:
    scfg = dataclasses.replace(server_cfg, x509=creds(getattr(pki, cert)))
    t = run(client_cfg, scfg)
    err = t.errors["client"]
    assert type(err) is PeerRejected and err.status == errno.EACCES
    assert err.alert == alert
    assert err.reason.startswith("peer certificate rejected:") and text in err.reason
    assert t.of("client", AlertSent) == [AlertSent(alert)]
    # nothing of the failed flight may reach the wire, and no APP keys
    assert not [e for e in t.of("client", CryptoData) if e.level != CryptoLevel.INITIAL]
    assert not any(s.level == CryptoLevel.APP for s in t.of("client", Secret))
    assert not t.of("client", HandshakeComplete)


def test_missing_intermediate_is_unknown_ca(
    pki: Pki, client_cfg: EngineConfig, server_cfg: EngineConfig, run: Run
) -> None:
    t = run(client_cfg, dataclasses.replace(server_cfg, x509=creds(pki.server_chained)))
    assert t.errors["client"].alert == 48


def test_client_without_transport_params_109(
    client_cfg: EngineConfig, server_cfg: EngineConfig, run: Run
) -> None:
    t = run(client_cfg, server_cfg, transport_params=None)
    err = t.errors["server"]
    assert type(err) is MissingTransportParams and err.alert == 109
    assert err.status == errno.EACCES and "0x39" in err.reason
    assert t.of("server", AlertSent) == [AlertSent(109)]
    assert not t.of("server", CryptoData)


def test_server_without_transport_params_109(
    client_cfg: EngineConfig, server_cfg: EngineConfig, run: Run
) -> None:
    t = run(client_cfg, dataclasses.replace(server_cfg, transport_params=None))
    err = t.errors["client"]
    assert type(err) is MissingTransportParams and err.alert == 109
    assert t.of("client", AlertSent) == [AlertSent(109)]
    assert not any(s.level == CryptoLevel.APP for s in t.of("client", Secret))
    assert not t.of("client", HandshakeComplete)


UNKNOWN_TYPE = b"\xae\x00\x00\x04junk"  # no such handshake message
JUNK_HELLO = b"\x01\x00\x00\x10" + b"\xff" * 16  # a ClientHello header, junk body
HUGE = b"\x01\xff\xff\xff" + b"\x00" * 60  # a 16 MB message "coming"
KEY_UPDATE = b"\x18\x00\x00\x01\x00"  # RFC 9001 §6: never in QUIC


def _at(
    level: CryptoLevel, client_cfg: EngineConfig, server_cfg: EngineConfig, pair: Pair
) -> Engine:
    """An engine that currently expects input at ``level``."""
    c, s = pair(client_cfg, server_cfg)
    if level == CryptoLevel.INITIAL:
        return s
    t = roundtrip(c, s)
    if level == CryptoLevel.APP:
        assert c.complete and not t.errors
        return c
    # HANDSHAKE: a client that has read the ServerHello only
    c2, s2 = pair(client_cfg, server_cfg)
    c2.start()
    for e in c2.events():
        if isinstance(e, CryptoData):
            s2.receive(e.level, e.data)
    sh = [e for e in s2.events() if isinstance(e, CryptoData)][0]
    assert sh.level == CryptoLevel.INITIAL
    c2.receive(sh.level, sh.data)
    return c2


@pytest.mark.parametrize(
    "level", [CryptoLevel.INITIAL, CryptoLevel.HANDSHAKE, CryptoLevel.APP], ids=lambda lv: lv.name
)
@pytest.mark.parametrize(
    "garbage,cls,alert",
    [
        (UNKNOWN_TYPE, PeerRejected, 10),
        (KEY_UPDATE, PeerRejected, 10),
        (HUGE, PeerRejected, 50),
        (JUNK_HELLO, PeerRejected, None),  # GnuTLS judges the body: see below
    ],
    ids=["unknown-type", "key-update", "huge-length", "junk-body"],
)
def test_garbage_at_each_level(
    level: CryptoLevel,
    garbage: bytes,
    cls: type,
    alert: int | None,
    client_cfg: EngineConfig,
    server_cfg: EngineConfig,
    pair: Pair,
) -> None:
    e = _at(level, client_cfg, server_cfg, pair)
    e.events()
    with pytest.raises(HandshakeError) as info:
        e.receive(level, garbage)
    err = info.value
    assert type(err) is cls and err.status == errno.EACCES
    if alert is None:
        # a junk ClientHello body: decode_error (50) where a ClientHello may come, else
        # GnuTLS's unexpected_message (10) for a ClientHello at the wrong point
        alert = 50 if level == CryptoLevel.INITIAL else 10
    assert err.alert == alert, err
    assert level.name in err.reason or "handshake" in err.reason
    assert e.events() == [AlertSent(alert)]
    assert e.failed is err
    # any later input re-raises the same error, and emits nothing more
    for lv in CryptoLevel:
        with pytest.raises(HandshakeError) as again:
            e.receive(lv, b"\x14\x00\x00\x00")
        assert again.value is err
    assert e.events() == []
    e.close()


@pytest.mark.parametrize(
    "level", [CryptoLevel.INITIAL, CryptoLevel.HANDSHAKE, CryptoLevel.APP], ids=lambda lv: lv.name
)
def test_early_level_is_protocol_violation(
    level: CryptoLevel, client_cfg: EngineConfig, server_cfg: EngineConfig, pair: Pair
) -> None:
    e = _at(level, client_cfg, server_cfg, pair)
    with pytest.raises(ProtocolViolation) as info:
        e.receive(CryptoLevel.EARLY, b"\x01\x00\x00\x00")
    assert info.value.status == errno.EPROTO and "EARLY" in info.value.reason


def test_wrong_level_is_protocol_violation(
    client_cfg: EngineConfig, server_cfg: EngineConfig, pair: Pair
) -> None:
    """GnuTLS 3.7.9 ignores the level of input; the engine must not (RFC 9001 §4)."""
    c, s = pair(client_cfg, server_cfg)
    c.start()
    (ch,) = [e for e in c.events() if isinstance(e, CryptoData)]
    with pytest.raises(ProtocolViolation) as info:
        s.receive(CryptoLevel.HANDSHAKE, ch.data)  # a valid ClientHello, wrong level
    assert info.value.alert == 10 and "expecting INITIAL" in info.value.reason
    assert s.events() == [AlertSent(10)]


def test_bytes_past_a_key_change(
    client_cfg: EngineConfig, server_cfg: EngineConfig, pair: Pair
) -> None:
    """ServerHello plus extra bytes at INITIAL: the extra bytes may not become HANDSHAKE."""
    c, s = pair(client_cfg, server_cfg)
    c.start()
    for e in c.events():
        if isinstance(e, CryptoData):
            s.receive(e.level, e.data)
    sh = [e for e in s.events() if isinstance(e, CryptoData)][0]
    with pytest.raises(ProtocolViolation) as info:
        c.receive(CryptoLevel.INITIAL, sh.data + b"\x08\x00")
    assert info.value.alert == 10
    assert not [e for e in c.events() if isinstance(e, Secret | CryptoData)]


def test_oversized_flight(client_cfg: EngineConfig, server_cfg: EngineConfig, pair: Pair) -> None:
    _, s = pair(client_cfg, server_cfg)
    chunk = b"\x01" + MAX_HANDSHAKE_BYTES.to_bytes(3, "big")
    with pytest.raises(PeerRejected) as info:
        s.receive(CryptoLevel.INITIAL, chunk + bytes(MAX_HANDSHAKE_BYTES))
    assert info.value.alert == 10 and str(MAX_HANDSHAKE_BYTES) in info.value.reason
