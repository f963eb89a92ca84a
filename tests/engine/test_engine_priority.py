# SPDX-License-Identifier: GPL-2.0-or-later
"""Rules from the research: compat mode off, empty legacy_session_id, max_early_data
0xffffffff, no KeyUpdate ever."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
from engine_helpers import (
    EXT_EARLY_DATA,
    HT_CLIENT_HELLO,
    HT_KEY_UPDATE,
    HT_NEW_SESSION_TICKET,
    Run,
    Transcript,
    parse_client_hello,
    parse_new_session_ticket,
)

from quichsd.gnutls.creds import PriorityCache
from quichsd.tls.engine import Auth, EngineConfig, ResumptionKx, Role, priority_string
from quichsd.tls.events import SessionData
from quichsd.uapi import CertRequest, Cipher, CryptoLevel


@pytest.mark.parametrize(
    "role,auth,kx,ciphers,groups",
    list(
        itertools.product(
            list(Role),
            list(Auth),
            list(ResumptionKx),
            [(), (Cipher.CHACHA20_POLY1305,), tuple(Cipher)],
            [(), ("X25519",)],
        )
    ),
)
def test_priority_string_disables_compat_mode(
    role: Role, auth: Auth, kx: ResumptionKx, ciphers: tuple[Cipher, ...], groups: tuple[str, ...]
) -> None:
    cfg = EngineConfig(role, auth=auth, resumption_kx=kx, ciphers=ciphers, groups=groups)
    prio = priority_string(cfg)
    assert "%DISABLE_TLS13_COMPAT_MODE" in prio.split(":")
    assert "+VERS-TLS1.3" in prio and "-VERS-ALL" in prio
    PriorityCache().get(prio)  # GnuTLS accepts it


def _all_messages(t: Transcript) -> list[tuple[CryptoLevel, int, bytes]]:
    return t.messages("client") + t.messages("server")


def test_client_hello_has_empty_legacy_session_id(
    client_cfg: EngineConfig, server_cfg: EngineConfig, run: Run
) -> None:
    t = run(client_cfg, server_cfg)
    hellos = [b for lv, ht, b in t.messages("client") if ht == HT_CLIENT_HELLO]
    assert hellos
    for body in hellos:
        assert parse_client_hello(body).legacy_session_id == b""


def test_ticket_advertises_max_early_data_ffffffff(
    client_cfg: EngineConfig, server_cfg: EngineConfig, run: Run
) -> None:
    t = run(client_cfg, server_cfg)
    nsts = [(lv, b) for lv, ht, b in t.messages("server") if ht == HT_NEW_SESSION_TICKET]
    assert len(nsts) == 1
    level, body = nsts[0]
    assert level == CryptoLevel.APP
    assert parse_new_session_ticket(body)[EXT_EARLY_DATA] == b"\xff\xff\xff\xff"


def test_ticket_without_early_data_has_no_extension(
    client_cfg: EngineConfig, server_cfg: EngineConfig, run: Run
) -> None:
    t = run(client_cfg, dataclasses.replace(server_cfg, early_data=False))
    (body,) = [b for lv, ht, b in t.messages("server") if ht == HT_NEW_SESSION_TICKET]
    assert EXT_EARLY_DATA not in parse_new_session_ticket(body)


def test_no_key_update_ever(
    client_cfg: EngineConfig, server_cfg: EngineConfig, client_with_cert: object, run: Run
) -> None:
    """Across full, mutual, resumed and 0-RTT handshakes, and post-handshake messages."""
    t1 = run(
        client_cfg,
        dataclasses.replace(server_cfg, cert_request=CertRequest.REQUIRE),
        x509=client_with_cert,
    )
    t2 = run(client_cfg, server_cfg)
    (sd,) = t2.of("client", SessionData)
    t3 = run(client_cfg, server_cfg, session_data=sd.data)
    for t in (t1, t2, t3):
        assert not t.errors
        types = [ht for _, ht, _ in _all_messages(t)]
        assert HT_KEY_UPDATE not in types
        # post-handshake: exactly one NewSessionTicket and nothing else at APP
        app = [ht for lv, ht, _ in _all_messages(t) if lv == CryptoLevel.APP]
        assert app == [HT_NEW_SESSION_TICKET]
