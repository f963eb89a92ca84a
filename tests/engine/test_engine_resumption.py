# SPDX-License-Identifier: GPL-2.0-or-later
"""Session tickets, resumption, 0-RTT once, and a replayed ClientHello."""

from __future__ import annotations

import dataclasses

import pytest
from engine_helpers import HT_CERTIFICATE, HT_CERTIFICATE_VERIFY, Pair, Run, Transcript, roundtrip
from pki import Pki

from quichsd.tls.engine import EngineConfig, ResumptionKx
from quichsd.tls.events import CryptoData, HandshakeComplete, Secret, SessionData
from quichsd.uapi import CryptoLevel

EARLY_TX = (CryptoLevel.EARLY, True)
EARLY_RX = (CryptoLevel.EARLY, False)


def ticket(t: Transcript) -> bytes:
    sd = t.of("client", SessionData)
    assert len(sd) == 1 and len(sd[0].data) > 100
    return sd[0].data


@pytest.fixture
def session_data(client_cfg: EngineConfig, server_cfg: EngineConfig, run: Run) -> bytes:
    return ticket(run(client_cfg, server_cfg))


def test_resumption_with_0rtt(
    pki: Pki, session_data: bytes, client_cfg: EngineConfig, server_cfg: EngineConfig, run: Run
) -> None:
    t = run(client_cfg, server_cfg, session_data=session_data)
    assert not t.errors
    c, s = t.complete("client"), t.complete("server")
    assert c.resumed and s.resumed
    assert c.early_data_accepted and s.early_data_accepted
    # not re-sent: GnuTLS restores the original server chain from the session data
    assert c.peer_certificates == (pki.server.cert_der,)
    sent = {ht for _, ht, _ in t.messages("server")}
    assert HT_CERTIFICATE not in sent and HT_CERTIFICATE_VERIFY not in sent
    cs, ss = t.secrets("client"), t.secrets("server")
    assert EARLY_TX in cs and EARLY_RX not in cs
    assert EARLY_RX in ss and EARLY_TX not in ss
    assert cs[EARLY_TX].secret == ss[EARLY_RX].secret
    for lv in (CryptoLevel.HANDSHAKE, CryptoLevel.APP):
        assert cs[(lv, True)].secret == ss[(lv, False)].secret
        assert cs[(lv, False)].secret == ss[(lv, True)].secret
    # the early key comes out of start(), with the ClientHello (0-RTT can follow it)
    (early,) = [
        st
        for st in t.steps
        if isinstance(st.event, Secret)
        and st.event.level == CryptoLevel.EARLY
        and st.side == "client"
    ]
    assert early.cause == -1
    assert t.complete("client").alpn == b"h3"
    # a resumed session gets a fresh ticket too
    assert len(t.of("client", SessionData)) == 1


@pytest.mark.parametrize(
    "kx,group", [(ResumptionKx.PSK_DHE, "SECP256R1"), (ResumptionKx.PSK, None)]
)
def test_resumption_key_exchange(
    kx: ResumptionKx,
    group: str | None,
    session_data: bytes,
    client_cfg: EngineConfig,
    server_cfg: EngineConfig,
    run: Run,
) -> None:
    t = run(client_cfg, server_cfg, session_data=session_data, resumption_kx=kx)
    assert t.complete("client").resumed
    assert t.complete("client").group == t.complete("server").group == group


def test_client_without_early_data(
    session_data: bytes, client_cfg: EngineConfig, server_cfg: EngineConfig, run: Run
) -> None:
    t = run(client_cfg, server_cfg, session_data=session_data, early_data=False)
    assert t.complete("server").resumed and not t.complete("server").early_data_accepted
    assert EARLY_TX not in t.secrets("client") and EARLY_RX not in t.secrets("server")


def test_garbage_session_data_falls_back_to_full(
    client_cfg: EngineConfig, server_cfg: EngineConfig, pair: Pair
) -> None:
    c, s = pair(dataclasses.replace(client_cfg, session_data=b"\x00not a session" * 8), server_cfg)
    assert c.session_data_rejected
    t = roundtrip(c, s)
    assert not t.errors and not t.complete("client").resumed


def test_replayed_client_hello_rejects_0rtt(
    session_data: bytes, client_cfg: EngineConfig, server_cfg: EngineConfig, pair: Pair
) -> None:
    """The same ClientHello bytes reach two server sessions sharing the ticket key and the
    process-wide anti-replay context: only the first accepts 0-RTT. The second still
    completes the handshake, as a resumed 1-RTT one."""
    c, s1 = pair(dataclasses.replace(client_cfg, session_data=session_data), server_cfg)
    _, s2 = pair(client_cfg, server_cfg)
    c.start()
    cev = c.events()
    assert any(isinstance(e, Secret) and e.level == CryptoLevel.EARLY for e in cev)
    (ch,) = [e for e in cev if isinstance(e, CryptoData)]
    assert ch.level == CryptoLevel.INITIAL

    s1.receive(ch.level, ch.data)
    first = s1.events()
    assert any(isinstance(e, Secret) and e.level == CryptoLevel.EARLY and not e.send for e in first)

    s2.receive(ch.level, ch.data)  # the replay
    replay = s2.events()
    assert not any(isinstance(e, Secret) and e.level == CryptoLevel.EARLY for e in replay)
    assert any(isinstance(e, CryptoData) for e in replay)  # it answers, without 0-RTT

    # finish the real client against the replay target: a 1-RTT resumed handshake
    pending = [e for e in replay if isinstance(e, CryptoData)]
    done: dict[str, HandshakeComplete] = {}
    for _ in range(10):
        for e in pending:
            c.receive(e.level, e.data)
        back = c.events()
        for e in back:
            if isinstance(e, HandshakeComplete):
                done["client"] = e
            if isinstance(e, CryptoData):
                s2.receive(e.level, e.data)
        pending = []
        for e in s2.events():
            if isinstance(e, HandshakeComplete):
                done["server"] = e
            if isinstance(e, CryptoData):
                pending.append(e)
        if not pending:
            break
    assert set(done) == {"client", "server"}
    assert done["server"].resumed and not done["server"].early_data_accepted
    assert not done["client"].early_data_accepted
