# SPDX-License-Identifier: GPL-2.0-or-later
"""Callbacks never let an exception reach C: the handshake fails with LocalError (EIO)
carrying the cause; the engine stays closable."""

from __future__ import annotations

import dataclasses
import errno

from engine_helpers import Pair, Run, roundtrip

from quichsd.errors import LocalError
from quichsd.tls.engine import Auth, EngineConfig
from quichsd.tls.events import AlertSent, HandshakeComplete, Secret
from quichsd.uapi import CryptoLevel


class Boom(RuntimeError):
    pass


def boom(*_args: object) -> None:
    raise Boom("callback failed on purpose")


def _assert_local(err: object) -> None:
    assert type(err) is LocalError and err.status == errno.EIO
    assert err.alert == 80  # internal_error
    assert isinstance(err.__cause__, Boom)
    assert "Boom" in err.reason and "callback failed on purpose" in err.reason


def test_raising_psk_lookup(client_cfg: EngineConfig, server_cfg: EngineConfig, pair: Pair) -> None:
    ccfg = dataclasses.replace(
        client_cfg, auth=Auth.PSK, x509=None, psk_identity="a", psk_key=bytes(32)
    )
    scfg = dataclasses.replace(server_cfg, auth=Auth.PSK, x509=None, psk_lookup=boom)
    c, s = pair(ccfg, scfg)
    t = roundtrip(c, s)
    _assert_local(t.errors["server"])
    assert t.of("server", AlertSent) == [AlertSent(80)]
    assert not t.of("server", Secret)
    s.close()
    s.close()


def test_raising_keylog(client_cfg: EngineConfig, server_cfg: EngineConfig, pair: Pair) -> None:
    c, s = pair(dataclasses.replace(client_cfg, keylog=boom), server_cfg)
    t = roundtrip(c, s)
    _assert_local(t.errors["client"])
    assert t.of("client", AlertSent) == [AlertSent(80)]
    assert not t.of("client", HandshakeComplete)
    c.close()


def test_raising_transport_params_source(
    client_cfg: EngineConfig, server_cfg: EngineConfig, pair: Pair
) -> None:
    class BadBytes(bytes):
        def __len__(self) -> int:
            raise Boom("callback failed on purpose")

    c, s = pair(dataclasses.replace(client_cfg, transport_params=BadBytes(b"x")), server_cfg)
    t = roundtrip(c, s)
    _assert_local(t.errors["client"])
    c.close()


def test_keylog_lines_match_secrets(
    client_cfg: EngineConfig, server_cfg: EngineConfig, run: Run
) -> None:
    lines: list[str] = []
    t = run(client_cfg, server_cfg, keylog=lines.append)
    assert not t.errors
    got = {ln.split()[0]: bytes.fromhex(ln.split()[2]) for ln in lines}
    sec = t.secrets("client")
    assert got["CLIENT_HANDSHAKE_TRAFFIC_SECRET"] == sec[(CryptoLevel.HANDSHAKE, True)].secret
    assert got["SERVER_HANDSHAKE_TRAFFIC_SECRET"] == sec[(CryptoLevel.HANDSHAKE, False)].secret
    assert got["CLIENT_TRAFFIC_SECRET_0"] == sec[(CryptoLevel.APP, True)].secret
    assert got["SERVER_TRAFFIC_SECRET_0"] == sec[(CryptoLevel.APP, False)].secret
