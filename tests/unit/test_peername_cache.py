# SPDX-License-Identifier: GPL-2.0-or-later
"""quichsd.tls.peername maps each distinct peer name once (issue 15: the IP parse, IDNA
mapping and label checks were a sixth of a client handshake's CPU), and still refuses a
bad name every time it is asked."""

from __future__ import annotations

import pytest

from quichsd.errors import InvalidRequest
from quichsd.gnutls import _lib as L
from quichsd.tls import peername


def test_a_name_is_mapped_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bytes] = []
    real = L.idna_to_ascii

    def counting(name: bytes) -> bytes:
        calls.append(name)
        return real(name)

    monkeypatch.setattr(L, "idna_to_ascii", counting)
    first = peername.peer_identity("once.cache-test.example", "192.0.2.1", allow_nameless=False)
    again = peername.peer_identity("once.cache-test.example", "192.0.2.7", allow_nameless=False)
    assert (
        first
        == again
        == peername.PeerIdentity(dns=b"once.cache-test.example", shown="'once.cache-test.example'")
    )
    assert calls == [b"once.cache-test.example"]
    ip = peername.peer_identity("2001:db8::1", None, allow_nameless=False)
    assert ip.ip == bytes.fromhex("20010db8000000000000000000000001") and ip.dns is None


def test_a_bad_name_is_refused_every_time() -> None:
    for _ in range(2):
        with pytest.raises(InvalidRequest, match="control characters"):
            peername.peer_identity("bad\x00.example", None, allow_nameless=True)
        with pytest.raises(InvalidRequest, match="not a host name"):
            peername.peer_identity("under score!.example", None, allow_nameless=True)
