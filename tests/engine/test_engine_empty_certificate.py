# SPDX-License-Identifier: GPL-2.0-or-later
"""A server whose Certificate message lists no certificate (RFC 8446 §4.4.2.4: the client
MUST abort with decode_error). GnuTLS's server engine makes the real flight; only the
Certificate message's body is replaced by an empty one on its way to our client."""

from __future__ import annotations

from engine_helpers import HT_CERTIFICATE, Pair, split_messages

from quichsd.errors import HandshakeError, PeerRejected
from quichsd.tls.engine import EngineConfig
from quichsd.tls.events import AlertSent, CryptoData, HandshakeComplete, Secret
from quichsd.uapi import CryptoLevel

#: certificate_request_context <0> and certificate_list <0>
EMPTY_CERTIFICATE = b"\x00" + b"\x00\x00\x00"


def _empty_certificate(data: bytes) -> tuple[bytes, int]:
    out, replaced = b"", 0
    for htype, body in split_messages(data):
        if htype == HT_CERTIFICATE:
            body, replaced = EMPTY_CERTIFICATE, replaced + 1
        out += bytes([htype]) + len(body).to_bytes(3, "big") + body
    return out, replaced


def test_empty_server_certificate_is_decode_error(
    pair: Pair, client_cfg: EngineConfig, server_cfg: EngineConfig
) -> None:
    client, server = pair(client_cfg, server_cfg)
    client.start()
    for ev in client.events():
        if isinstance(ev, CryptoData):
            server.receive(ev.level, ev.data)
    flight = [e for e in server.events() if isinstance(e, CryptoData)]
    replaced = 0
    error: HandshakeError | None = None
    for ev in flight:
        data = ev.data
        if ev.level is CryptoLevel.HANDSHAKE:
            data, n = _empty_certificate(data)
            replaced += n
        try:
            client.receive(ev.level, data)
        except HandshakeError as exc:
            error = exc
            break
    assert replaced == 1
    assert isinstance(error, PeerRejected), error
    events = client.events()
    assert error.alert == 50, error  # decode_error: CONNECTION_CLOSE 0x132
    assert "No certificate was found" in error.reason, error.reason
    assert AlertSent(50) in events
    assert not [e for e in events if isinstance(e, HandshakeComplete)]
    assert not [e for e in events if isinstance(e, Secret) and e.level is CryptoLevel.APP]
