# SPDX-License-Identifier: GPL-2.0-or-later
"""Drive a client engine against a server engine in-process, and read the TLS bytes.

``roundtrip(client, server)`` plays the part of two QUIC stacks (in the style of aioquic's
``client_and_server``): every CryptoData one side emits is delivered, in order and at its
level, to the other side, until neither side has anything left to say or one side fails.
Everything either side emitted is recorded in a :class:`Transcript`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from pki import Issued

from quichsd.errors import HandshakeError
from quichsd.gnutls.creds import CertificateCredentials
from quichsd.tls.engine import Engine
from quichsd.tls.events import CryptoData, Event, HandshakeComplete, Secret
from quichsd.uapi import CryptoLevel

E = TypeVar("E")

SERVER_NAME = "server.test"
CLIENT_TP = b"\x01\x02client transport parameters\x00\xff"
SERVER_TP = b"\x03\x04server transport parameters\x00\xfe"

Pair = Callable[..., tuple[Engine, Engine]]
Run = Callable[..., "Transcript"]


def creds(
    key: Issued | None = None, *, chain: bytes | None = None, trust: bytes | None = None
) -> CertificateCredentials:
    c = CertificateCredentials()
    if key is not None:
        c.set_key_pair(chain or key.cert_pem, key.key_pem)
    if trust is not None:
        c.set_trust(trust)
    return c


HT_CLIENT_HELLO = 1
HT_SERVER_HELLO = 2
HT_NEW_SESSION_TICKET = 4
HT_ENCRYPTED_EXTENSIONS = 8
HT_CERTIFICATE = 11
HT_CERTIFICATE_REQUEST = 13
HT_CERTIFICATE_VERIFY = 15
HT_FINISHED = 20
HT_KEY_UPDATE = 24

EXT_EARLY_DATA = 42


@dataclass
class Step:
    """One event, the side that emitted it, and the delivery (index) that caused it."""

    side: str
    cause: int  # -1: start(); n: the n-th delivery
    event: Event


@dataclass
class Transcript:
    steps: list[Step] = field(default_factory=list)
    #: (sender side, level, bytes) in delivery order
    wire: list[tuple[str, CryptoLevel, bytes]] = field(default_factory=list)
    errors: dict[str, HandshakeError] = field(default_factory=dict)

    def events(self, side: str) -> list[Event]:
        return [s.event for s in self.steps if s.side == side]

    def of(self, side: str, kind: type[E]) -> list[E]:
        return [e for e in self.events(side) if isinstance(e, kind)]

    def secrets(self, side: str) -> dict[tuple[CryptoLevel, bool], Secret]:
        out: dict[tuple[CryptoLevel, bool], Secret] = {}
        for s in self.of(side, Secret):
            key = (s.level, s.send)
            assert key not in out, f"{side} emitted the {s.level.name} send={s.send} secret twice"
            out[key] = s
        return out

    def complete(self, side: str) -> HandshakeComplete:
        done = self.of(side, HandshakeComplete)
        assert len(done) == 1, f"{side}: {len(done)} HandshakeComplete events; errors={self.errors}"
        return done[0]

    def messages(self, side: str) -> list[tuple[CryptoLevel, int, bytes]]:
        """Handshake messages ``side`` sent: (level, type, body)."""
        out = []
        for sender, level, data in self.wire:
            if sender == side:
                out += [(level, t, body) for t, body in split_messages(data)]
        return out

    def index(self, side: str, pred: object) -> int:
        """Position of the first event of ``side`` satisfying ``pred`` (a callable)."""
        for i, e in enumerate(self.events(side)):
            if pred(e):  # type: ignore[operator]
                return i
        raise AssertionError(f"no matching event on {side}")


def roundtrip(client: Engine, server: Engine, *, max_deliveries: int = 200) -> Transcript:
    """Run the handshake (and post-handshake messages) between two engines to quiescence."""
    t = Transcript()
    engines = {"client": client, "server": server}
    other = {"client": "server", "server": "client"}
    pending: list[tuple[str, CryptoLevel, bytes]] = []

    def collect(side: str, cause: int) -> None:
        for e in engines[side].events():
            t.steps.append(Step(side, cause, e))
            if isinstance(e, CryptoData):
                pending.append((side, e.level, e.data))

    try:
        client.start()
    except HandshakeError as exc:
        t.errors["client"] = exc
    collect("client", -1)
    n = 0
    while pending and not t.errors:
        assert n < max_deliveries, "handshake did not converge"
        sender, level, data = pending.pop(0)
        t.wire.append((sender, level, data))
        receiver = other[sender]
        try:
            engines[receiver].receive(level, data)
        except HandshakeError as exc:
            t.errors[receiver] = exc
        collect(receiver, n)
        n += 1
    return t


def split_messages(data: bytes) -> list[tuple[int, bytes]]:
    out = []
    i = 0
    while i < len(data):
        assert len(data) - i >= 4, "truncated handshake header"
        htype, length = data[i], int.from_bytes(data[i + 1 : i + 4], "big")
        body = data[i + 4 : i + 4 + length]
        assert len(body) == length, "truncated handshake body"
        out.append((htype, body))
        i += 4 + length
    return out


def _vec(buf: bytes, pos: int, lenbytes: int) -> tuple[bytes, int]:
    n = int.from_bytes(buf[pos : pos + lenbytes], "big")
    start = pos + lenbytes
    assert start + n <= len(buf), "vector overruns its message"
    return buf[start : start + n], start + n


def _extensions(block: bytes) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    i = 0
    while i < len(block):
        etype = int.from_bytes(block[i : i + 2], "big")
        body, i = _vec(block, i + 2, 2)
        out[etype] = body
    return out


@dataclass
class ClientHello:
    legacy_session_id: bytes
    extensions: dict[int, bytes]


def parse_client_hello(body: bytes) -> ClientHello:
    pos = 2 + 32  # legacy_version, random
    sid, pos = _vec(body, pos, 1)
    _suites, pos = _vec(body, pos, 2)
    _comp, pos = _vec(body, pos, 1)
    exts, pos = _vec(body, pos, 2)
    assert pos == len(body), "trailing bytes after ClientHello extensions"
    return ClientHello(sid, _extensions(exts))


def parse_encrypted_extensions(body: bytes) -> dict[int, bytes]:
    exts, pos = _vec(body, 0, 2)
    assert pos == len(body)
    return _extensions(exts)


def parse_new_session_ticket(body: bytes) -> dict[int, bytes]:
    """The extensions of a TLS 1.3 NewSessionTicket (RFC 8446 §4.6.1)."""
    pos = 4 + 4  # ticket_lifetime, ticket_age_add
    _nonce, pos = _vec(body, pos, 1)
    ticket, pos = _vec(body, pos, 2)
    assert ticket, "empty ticket"
    exts, pos = _vec(body, pos, 2)
    assert pos == len(body), "trailing bytes after NewSessionTicket extensions"
    return _extensions(exts)
