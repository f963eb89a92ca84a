# SPDX-License-Identifier: GPL-2.0-or-later
"""Property tests of the TLS engine (quichsd/tls/engine.py) fed what a hostile peer sends.

A server engine at INITIAL, and a client engine after its ClientHello (at INITIAL) or after
the ServerHello (at HANDSHAKE), get arbitrary bytes or mutated real handshake messages.
Each either keeps waiting (no exception) or raises a HandshakeError subclass whose status is
in the table of docs/design.md, after which it stays failed with the same error. Every
engine is closed; the process's fd count and the live-session registry do not grow.
"""

from __future__ import annotations

import errno
import gc
import os
import sys
from collections.abc import Callable
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))  # engine_helpers
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # pki

from engine_helpers import CLIENT_TP, SERVER_NAME, SERVER_TP, creds, roundtrip  # noqa: E402
from pki import make_pki  # noqa: E402

from quichsd.errors import (  # noqa: E402
    BadMessage,
    ConnectionReset,
    HandshakeError,
    HandshakeTimeout,
    InvalidRequest,
    KeyRejected,
    LocalError,
    PeerRejected,
    ProtocolViolation,
    Unsupported,
)
from quichsd.gnutls.creds import AntiReplay, generate_ticket_key  # noqa: E402
from quichsd.tls.callbacks import LIVE  # noqa: E402
from quichsd.tls.engine import Engine, EngineConfig, Role  # noqa: E402
from quichsd.tls.events import CryptoData, HandshakeComplete, Secret  # noqa: E402
from quichsd.uapi import CryptoLevel  # noqa: E402

FUZZ = settings(
    max_examples=500,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

#: docs/design.md "Status for DONE": class -> status (SocketError, "its errno", needs a socket)
DOCUMENTED = {
    PeerRejected: errno.EACCES,
    KeyRejected: errno.EKEYREJECTED,
    HandshakeTimeout: errno.ETIMEDOUT,
    Unsupported: errno.EOPNOTSUPP,
    InvalidRequest: errno.EINVAL,
    BadMessage: errno.EBADMSG,
    ProtocolViolation: errno.EPROTO,
    ConnectionReset: errno.ECONNRESET,
    LocalError: errno.EIO,
}

_PKI = make_pki()
_CLIENT_CREDS = creds(trust=_PKI.ca.cert_pem)
_SERVER_CREDS = creds(_PKI.server, trust=_PKI.ca.cert_pem)
_TICKET_KEY = generate_ticket_key()
_ANTI_REPLAY = AntiReplay()

CLIENT_CFG = EngineConfig(
    Role.CLIENT,
    alpns=(b"h3",),
    transport_params=CLIENT_TP,
    peer_name=SERVER_NAME,
    x509=_CLIENT_CREDS,
)
SERVER_CFG = EngineConfig(
    Role.SERVER,
    alpns=(b"smb", b"h3"),
    transport_params=SERVER_TP,
    x509=_SERVER_CREDS,
    ticket_key=_TICKET_KEY,
    anti_replay=_ANTI_REPLAY,
)


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def first_flights() -> tuple[bytes, bytes]:
    """A real ClientHello and the server's INITIAL reply (its ServerHello)."""
    with Engine(CLIENT_CFG) as c, Engine(SERVER_CFG) as s:
        c.start()
        (ch,) = [e for e in c.events() if isinstance(e, CryptoData)]
        s.receive(ch.level, ch.data)
        sh = [e for e in s.events() if isinstance(e, CryptoData)][0]
        assert sh.level is CryptoLevel.INITIAL
        return ch.data, sh.data


def warm_up() -> None:
    """One full handshake first, so lazily opened library fds are not counted as growth."""
    with Engine(CLIENT_CFG) as c, Engine(SERVER_CFG) as s:
        t = roundtrip(c, s)
        assert not t.errors and c.complete and s.complete
    first_flights()


warm_up()
CLIENT_HELLO, SERVER_HELLO = first_flights()


def mutate(base: bytes, data: st.DataObject) -> bytes:
    raw = bytearray(base)
    how = data.draw(st.sampled_from(["flip", "truncate", "splice", "length"]))
    if how == "flip":
        for _ in range(data.draw(st.integers(1, 6))):
            bit = data.draw(st.integers(0, len(raw) * 8 - 1))
            raw[bit // 8] ^= 1 << (bit % 8)
    elif how == "truncate":
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    elif how == "splice":
        at = data.draw(st.integers(0, len(raw)))
        cut = data.draw(st.integers(0, 16))
        raw[at : at + cut] = data.draw(st.binary(max_size=16))
    else:  # rewrite the 24-bit length of the first message
        raw[1:4] = data.draw(st.integers(0, 2**24 - 1)).to_bytes(3, "big")
    return bytes(raw)


def chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` split at the given positions (as QUIC may deliver CRYPTO frames)."""
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, prev = [], 0
    for p in [*points, len(data)]:
        if p > prev:
            out.append(data[prev:p])
            prev = p
    return out


def feed(engine: Engine, level: CryptoLevel, pieces: list[bytes], *, may_progress: bool) -> None:
    """Deliver ``pieces``; check the outcome against the properties."""
    try:
        for piece in pieces:
            engine.receive(level, piece)
    except HandshakeError as err:
        cls = next((c for c in DOCUMENTED if isinstance(err, c)), None)
        assert cls is not None, f"{type(err).__name__} is not in the status table: {err}"
        assert err.status == DOCUMENTED[cls], (type(err).__name__, err.status)
        assert err.reason and str(err) == err.reason
        assert err.alert is None or 0 <= err.alert <= 255
        assert engine.failed is err
        for e in engine.events():  # no key material or data once failed
            assert not isinstance(e, CryptoData | Secret | HandshakeComplete), e
        try:
            engine.receive(level, b"\x14\x00\x00\x00")
        except HandshakeError as again:
            assert again is err
        else:
            raise AssertionError("a failed engine accepted more input") from None
        event(f"{type(err).__name__} alert={err.alert}")
        return
    # still waiting (or, for a mutation that kept the message valid, progressing)
    assert engine.failed is None
    produced = engine.events()
    if not may_progress:
        assert not any(isinstance(e, CryptoData | Secret | HandshakeComplete) for e in produced)
    event("waiting" if not produced else "progressed")


def run_bounded(prop: Callable[[], None]) -> None:
    """Run a hypothesis property and check nothing leaked across the whole run."""
    gc.collect()
    fds, live = fd_count(), len(LIVE)
    prop()
    gc.collect()
    assert len(LIVE) == live, f"{len(LIVE) - live} engine sessions were not closed"
    assert fd_count() <= fds, f"fd count grew from {fds} to {fd_count()}"


CUTS = st.lists(st.integers(0, 10_000), max_size=3)


def test_server_arbitrary_bytes_at_initial() -> None:
    @FUZZ
    @given(st.binary(min_size=1, max_size=600), CUTS)
    def prop(data: bytes, cuts: list[int]) -> None:
        with Engine(SERVER_CFG) as s:
            feed(s, CryptoLevel.INITIAL, chunks(data, cuts), may_progress=False)

    run_bounded(prop)


def test_server_handshake_shaped_bytes_at_initial() -> None:
    """Arbitrary bodies behind a plausible header (allowed type, matching length)."""

    @FUZZ
    @given(st.sampled_from([1, 2, 4, 8, 11, 13, 15, 20]), st.binary(max_size=600), CUTS)
    def prop(htype: int, body: bytes, cuts: list[int]) -> None:
        data = bytes([htype]) + len(body).to_bytes(3, "big") + body
        with Engine(SERVER_CFG) as s:
            feed(s, CryptoLevel.INITIAL, chunks(data, cuts), may_progress=False)

    run_bounded(prop)


def test_server_mutated_client_hello() -> None:
    @FUZZ
    @given(st.data(), CUTS)
    def prop(data: st.DataObject, cuts: list[int]) -> None:
        with Engine(SERVER_CFG) as s:
            raw = mutate(CLIENT_HELLO, data)
            feed(s, CryptoLevel.INITIAL, chunks(raw, cuts), may_progress=True)

    run_bounded(prop)


def test_client_arbitrary_bytes_at_initial() -> None:
    @FUZZ
    @given(st.binary(min_size=1, max_size=600), CUTS)
    def prop(data: bytes, cuts: list[int]) -> None:
        with Engine(CLIENT_CFG) as c:
            c.start()
            c.events()
            feed(c, CryptoLevel.INITIAL, chunks(data, cuts), may_progress=False)

    run_bounded(prop)


def test_client_mutated_server_hello() -> None:
    @FUZZ
    @given(st.data(), CUTS)
    def prop(data: st.DataObject, cuts: list[int]) -> None:
        with Engine(CLIENT_CFG) as c:
            c.start()
            c.events()
            feed(
                c, CryptoLevel.INITIAL, chunks(mutate(SERVER_HELLO, data), cuts), may_progress=True
            )

    run_bounded(prop)


def test_client_arbitrary_bytes_at_handshake() -> None:
    """A client that has read a real ServerHello, then gets junk at HANDSHAKE."""

    @FUZZ
    @given(st.binary(min_size=1, max_size=600), st.sampled_from([None, 8, 11, 15, 20]), CUTS)
    def prop(data: bytes, htype: int | None, cuts: list[int]) -> None:
        if htype is not None:  # a plausible header for the message that comes next
            data = bytes([htype]) + len(data).to_bytes(3, "big") + data
        with Engine(CLIENT_CFG) as c, Engine(SERVER_CFG) as s:
            c.start()
            (ch,) = [e for e in c.events() if isinstance(e, CryptoData)]
            s.receive(ch.level, ch.data)
            sh = [e for e in s.events() if isinstance(e, CryptoData)][0]
            c.receive(sh.level, sh.data)
            assert any(
                isinstance(e, Secret) and e.level is CryptoLevel.HANDSHAKE for e in c.events()
            )
            feed(c, CryptoLevel.HANDSHAKE, chunks(data, cuts), may_progress=False)

    run_bounded(prop)
