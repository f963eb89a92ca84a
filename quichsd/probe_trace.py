# SPDX-License-Identifier: GPL-2.0-or-later
"""What happened on one probe handshake, seen at the QUIC socket contract.

:class:`TraceSocket` stands between the handshake (quichsd's driver, or the daemon through
``--via``) and the probe's QUIC socket and passes every call through unchanged, noting on
the way: the handshake messages each side sent (decoded with :mod:`quichsd.probe_wire`),
both sides' transport parameters, and when each phase was reached (first flight sent,
ServerHello, handshake keys, Finished, ticket). Secrets are never kept: of a
CRYPTO_SECRET only its level and direction are noted.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from . import probe_wire as W
from . import uapi
from .quicsocket import Ancillary, find_handshake_level
from .uapi import CryptoLevel


@dataclass
class Trace:
    client: bool
    t0: float = field(default_factory=time.monotonic)
    #: (phase, seconds since t0), in the order reached
    phases: list[tuple[str, float]] = field(default_factory=list)
    sent: list[tuple[CryptoLevel, int, bytes]] = field(default_factory=list)
    received: list[tuple[CryptoLevel, int, bytes]] = field(default_factory=list)
    local_tp: bytes | None = None
    peer_tp: bytes | None = None
    secrets: set[tuple[CryptoLevel, bool]] = field(default_factory=set)

    def mark(self, phase: str) -> None:
        if all(p != phase for p, _ in self.phases):
            self.phases.append((phase, time.monotonic() - self.t0))

    def messages(self, sent: bool, mtype: int) -> list[bytes]:
        return [b for _lv, t, b in (self.sent if sent else self.received) if t == mtype]

    # -- what the report asks ----
    def client_hellos(self) -> list[W.ClientHelloInfo]:
        return [W.client_hello(b) for b in self.messages(self.client, W.CLIENT_HELLO)]

    def server_hellos(self) -> list[W.ServerHelloInfo]:
        return [W.server_hello(b) for b in self.messages(not self.client, W.SERVER_HELLO)]

    @property
    def hello_retry(self) -> bool:
        return any(sh.retry for sh in self.server_hellos())

    def early_data_in_ee(self) -> bool | None:
        """Whether the server's EncryptedExtensions accepted early data (None: none seen)."""
        ee = self.messages(not self.client, W.ENCRYPTED_EXTENSIONS)
        return W.EXT_EARLY_DATA in W.encrypted_extensions(ee[0]) if ee else None

    def peer_chain(self) -> list[bytes]:
        certs = self.messages(False, W.CERTIFICATE)
        return W.certificate_chain(certs[0]) if certs else []


class TraceSocket:
    """A QuicSocket that notes what passes (see the module doc) into :attr:`trace`."""

    def __init__(self, sock: Any, client: bool) -> None:
        self.sock = sock
        self.trace = Trace(client)
        self._readers = {d: {lv: W.MessageReader() for lv in CryptoLevel} for d in (0, 1)}

    def _messages(self, sent: bool, level: CryptoLevel, data: bytes) -> None:
        t = self.trace
        for mtype, body in self._readers[sent][level].feed(data):
            (t.sent if sent else t.received).append((level, mtype, body))
            if mtype == W.SERVER_HELLO:
                retry = body[2:34] == W.HRR_RANDOM
                name = "HelloRetryRequest" if retry else "ServerHello"
                t.mark(f"{name} {'received' if t.client else 'sent'}")
            elif mtype == W.CLIENT_HELLO and not t.client:
                t.mark("ClientHello received")
            elif mtype == W.NEW_SESSION_TICKET and sent:
                t.mark("session ticket sent")
            elif mtype == W.CERTIFICATE and sent != t.client:
                t.mark("server Certificate " + ("received" if t.client else "sent"))

    # -- QuicSocket ----
    def fileno(self) -> int:
        return int(self.sock.fileno())

    def getpeername(self) -> Any:
        return self.sock.getpeername()

    def setblocking(self, flag: bool, /) -> None:
        self.sock.setblocking(flag)

    def getsockopt(self, level: int, optname: int, buflen: int = 0, /) -> Any:
        value = self.sock.getsockopt(level, optname, buflen)
        if level == uapi.SOL_QUIC and optname == uapi.QUIC_SOCKOPT_TRANSPORT_PARAM_EXT:
            self.trace.local_tp = bytes(value)
        return value

    def setsockopt(self, level: int, optname: int, value: bytes, /) -> None:
        self.sock.setsockopt(level, optname, value)
        if level != uapi.SOL_QUIC:
            return
        t = self.trace
        if optname == uapi.QUIC_SOCKOPT_TRANSPORT_PARAM_EXT:
            t.peer_tp = bytes(value)
        elif optname == uapi.QUIC_SOCKOPT_SESSION_TICKET and t.client:
            t.mark("session ticket stored")
        elif optname == uapi.QUIC_SOCKOPT_CRYPTO_SECRET:
            s = uapi.unpack_crypto_secret(bytes(value))
            t.secrets.add((s.level, s.send))
            if s.level is CryptoLevel.HANDSHAKE:
                t.mark("handshake keys installed")
            elif s.level is CryptoLevel.EARLY:
                t.mark("0-RTT keys installed")
            elif (
                s.level is CryptoLevel.APP
                and len({d for lv, d in t.secrets if lv is CryptoLevel.APP}) == 2
            ):
                t.mark("Finished, 1-RTT keys installed")

    def sendmsg(
        self,
        buffers: Iterable[bytes],
        ancdata: Iterable[tuple[int, int, bytes]] = (),
        flags: int = 0,
        address: Any = None,
        /,
    ) -> int:
        bufs = [bytes(b) for b in buffers]
        anc = list(ancdata)
        n = int(self.sock.sendmsg(bufs, anc, flags))
        level = find_handshake_level(anc)
        if level is not None:
            if level is CryptoLevel.INITIAL:
                self.trace.mark("first flight sent")
            self._messages(True, level, b"".join(bufs))
        return n

    def recvmsg(
        self, bufsize: int, ancbufsize: int = 0, flags: int = 0, /
    ) -> tuple[bytes, Ancillary, int, Any]:
        data, anc, mflags, addr = self.sock.recvmsg(bufsize, ancbufsize, flags)
        try:
            level = find_handshake_level(anc)
        except ValueError:
            level = None
        if level is not None and data:
            if level is CryptoLevel.INITIAL:
                self.trace.mark("first peer data received")
            self._messages(False, level, bytes(data))
        return data, anc, mflags, addr
