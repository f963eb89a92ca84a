# SPDX-License-Identifier: GPL-2.0-or-later
"""One TLS handshake over a :class:`~quichsd.quicsocket.QuicSocket`, on asyncio.

The driver speaks the kernel QUIC socket contract (docs/kernel-interfaces.md §2-§3) and is the
only layer that touches the socket; the TLS engine below it is sans-IO.

States (one pass, in this order; each line is what the driver is doing)::

    READING_SOCKET_SETTINGS   getsockopt ALPN, CONFIG, SESSION_TICKET, TRANSPORT_PARAM_EXT
    STARTING                  build the engine; a client emits its ClientHello
    EXCHANGING                act on engine events in order (sendmsg CryptoData with MSG_MORE
                              on all but the last, setsockopt CRYPTO_SECRET per Secret,
                              TRANSPORT_PARAM_EXT with the peer's parameters, ALPN on a server);
                              wait for the socket, recvmsg until EAGAIN, feed the engine
    WAITING_FOR_TICKET        client with quic_config.receive_session_ticket = N: poll
                              getsockopt(SESSION_TICKET) every 100 ms for up to N s, feed the
                              NewSessionTicket, hand session data back with setsockopt
    DONE                      status 0, or the error's status; on a TLS alert the socket
                              gets CONNECTION_CLOSE 0x100 + alert first

Rules: every handshake has a deadline (``HandshakeTimeout`` -> ETIMEDOUT); the engine is
closed on every path; the reader registered on the event loop is removed on every path;
``run_handshake`` never raises a :class:`~quichsd.errors.HandshakeError` (it returns it).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import time
from collections.abc import Callable
from typing import TypeVar

from . import uapi
from .errors import (
    BadMessage,
    ConnectionReset,
    GnuTLSError,
    HandshakeError,
    HandshakeTimeout,
    InvalidRequest,
    KeyRejected,
    LocalError,
    PeerRejected,
    ProtocolViolation,
    SocketError,
)
from .logtext import printable
from .quicsocket import (
    HANDSHAKE_INFO_CMSG_SPACE,
    QuicSocket,
    find_handshake_level,
    getsockopt_bytes,
    handshake_cmsg,
    peer_address,
)
from .request import (
    CERT_REQUESTS,
    CIPHER_HINTS,
    HandshakeRequest,
    HandshakeResult,
    SocketSettings,
    TlsPolicy,
    close_code,
    engine_config,
)
from .tls.alerts import alert_name
from .tls.engine import Engine, Role
from .tls.events import (
    AlpnSelected,
    CryptoData,
    Event,
    HandshakeComplete,
    PeerTransportParams,
    Secret,
    SessionData,
)
from .uapi import CryptoLevel

#: the request/result types and their pure helpers live in :mod:`quichsd.request`;
#: importers take them from here too
__all__ = [
    "HandshakeRequest",
    "HandshakeResult",
    "SocketSettings",
    "TlsPolicy",
    "close_code",
    "engine_config",
    "read_settings",
    "run_handshake",
]

log = logging.getLogger("quichsd.driver")

RECV_BUFSIZE = 65536
#: the ticket wait polls getsockopt(SESSION_TICKET) (the kernel raises no readiness for
#: it): first after 5 ms, doubling to tlshd's 100 ms, so a ticket that follows the
#: handshake within a round trip costs milliseconds, not a fixed 100 ms
TICKET_POLL_FIRST = 0.005
TICKET_POLL_MAX = 0.1
T = TypeVar("T")


def _sockopt(sock: QuicSocket, opt: int, buflen: int, what: str) -> bytes:
    try:
        return getsockopt_bytes(sock, uapi.SOL_QUIC, opt, buflen)
    except OSError as e:
        raise SocketError(
            f"getsockopt({what}) failed: {e.strerror or e}", e.errno or errno.EIO
        ) from None


def _setopt(sock: QuicSocket, opt: int, value: bytes, what: str) -> None:
    try:
        sock.setsockopt(uapi.SOL_QUIC, opt, value)
    except OSError as e:
        raise _setopt_error(what, e) from None


def _setopt_error(what: str, e: OSError) -> SocketError:
    return SocketError(f"setsockopt({what}) failed: {e.strerror or e}", e.errno or errno.EIO)


def read_settings(sock: QuicSocket) -> SocketSettings:
    """READING_SOCKET_SETTINGS: what the kernel consumer configured on the socket."""
    raw_alpn = _sockopt(sock, uapi.QUIC_SOCKOPT_ALPN, uapi.QUIC_ALPN_MAX_LEN, "ALPN")
    try:
        alpns = uapi.parse_alpn_option(raw_alpn)
    except ValueError as e:
        raise InvalidRequest(f"socket ALPN setting is invalid: {e}") from None
    config = uapi.unpack_config(
        _sockopt(sock, uapi.QUIC_SOCKOPT_CONFIG, uapi.CONFIG_SIZE, "CONFIG")
    )
    if config.payload_cipher_type not in CIPHER_HINTS:
        raise InvalidRequest(f"socket cipher hint {config.payload_cipher_type} is not 0 or 51-54")
    if config.certificate_request not in CERT_REQUESTS:
        raise InvalidRequest(f"socket certificate_request {config.certificate_request} > 2")
    ticket = _sockopt(sock, uapi.QUIC_SOCKOPT_SESSION_TICKET, uapi.QUIC_TICKET_MAX_LEN, "TICKET")
    local_tp = _sockopt(
        sock, uapi.QUIC_SOCKOPT_TRANSPORT_PARAM_EXT, uapi.QUIC_TP_EXT_MAX_LEN, "TRANSPORT_PARAM_EXT"
    )
    return SocketSettings(alpns, config, ticket, local_tp)


def _peer_close_error(sock: QuicSocket) -> HandshakeError:
    """The peer (or the stack) closed the connection: say how, if the socket knows."""
    try:
        raw = sock.getsockopt(
            uapi.SOL_QUIC, uapi.QUIC_SOCKOPT_CONNECTION_CLOSE, uapi.CONNECTION_CLOSE_SIZE
        )
        info = uapi.unpack_connection_close(bytes(raw))
    except (OSError, ValueError):
        return ConnectionReset("connection closed during the handshake")
    code = info.errcode
    reason = printable(info.phrase)  # the peer's words: one log line, whatever they hold
    if uapi.QUIC_TRANSPORT_ERROR_CRYPTO <= code < uapi.QUIC_TRANSPORT_ERROR_CRYPTO + 256:
        alert = code - uapi.QUIC_TRANSPORT_ERROR_CRYPTO
        text = f"peer closed the connection with TLS alert {alert} ({alert_name(alert)})"
        if reason:
            text += f": {reason}"
        if alert == 115:  # unknown_psk_identity
            return KeyRejected(text)
        return PeerRejected(text)
    return ConnectionReset(
        f"connection closed with error 0x{code:x}" + (f": {reason}" if reason else "")
    )


#: sendmsg ancillary data per level, built once (the hot path passes these as they are)
_CMSGS = {lvl: (handshake_cmsg(lvl),) for lvl in CryptoLevel}
#: the usual recvmsg cmsg payload (one byte) -> level; anything else takes the full decode
_LEVEL_BY_PAYLOAD = {uapi.pack_handshake_info(lvl): lvl for lvl in CryptoLevel}
#: plain ints: ``int & socket.MSG_*`` (an IntFlag) would build an enum member per test
_MSG_MORE = int(socket.MSG_MORE)
_MSG_CTRUNC = int(socket.MSG_CTRUNC)


def _wake(fut: asyncio.Future[bool], readable: bool) -> None:
    if not fut.done():
        fut.set_result(readable)


class _Run:
    """One handshake in progress (holds the state the loop shares)."""

    def __init__(self, sock: QuicSocket, req: HandshakeRequest) -> None:
        self.sock = sock
        self.req = req
        self.loop = asyncio.get_running_loop()
        self.deadline = self.loop.time() + req.timeout
        self.engine: Engine | None = None
        self.info: HandshakeComplete | None = None
        self.alpn: bytes | None = None
        self.session_data: bytes | None = None
        self.app_secrets = 0
        self.phase = "reading socket settings"
        self.closed: HandshakeError | None = None
        self.fd = sock.fileno()

    async def _call(self, fn: Callable[..., T], *args: object) -> T:
        if self.req.executor is None:
            return fn(*args)
        return await self.loop.run_in_executor(self.req.executor, fn, *args)

    # -- events -> socket ---------------------------------------------------------------------
    def act(self, events: list[Event]) -> None:
        sock = self.sock
        last_data = -1  # MSG_MORE on every CryptoData but the last
        for i in range(len(events) - 1, -1, -1):
            if type(events[i]) is CryptoData:
                last_data = i
                break
        for i, ev in enumerate(events):
            # events are final dataclasses: dispatch on the exact type
            if type(ev) is CryptoData:
                flags = _MSG_MORE if i < last_data else 0
                try:
                    sock.sendmsg((ev.data,), _CMSGS[ev.level], flags)
                except OSError as e:
                    if e.errno in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN):
                        raise _peer_close_error(self.sock) from None
                    raise SocketError(
                        f"sendmsg of {len(ev.data)} bytes at {ev.level.name} failed: {e.strerror}",
                        e.errno or errno.EIO,
                    ) from None
            elif type(ev) is Secret:
                packed = uapi.pack_secret(ev.send, ev.level, ev.cipher, ev.secret)
                try:
                    sock.setsockopt(uapi.SOL_QUIC, uapi.QUIC_SOCKOPT_CRYPTO_SECRET, packed)
                except OSError as e:  # _setopt's error, its text made only when needed
                    raise _setopt_error(
                        f"CRYPTO_SECRET {ev.level.name} {'tx' if ev.send else 'rx'}", e
                    ) from None
                if ev.level is CryptoLevel.APP:
                    self.app_secrets += 1
                self.phase = self._phase_after(ev)
            elif type(ev) is PeerTransportParams:
                if len(ev.data) > uapi.QUIC_TP_EXT_MAX_LEN:
                    raise InvalidRequest(
                        f"peer transport parameters of {len(ev.data)} bytes exceed the kernel's "
                        f"{uapi.QUIC_TP_EXT_MAX_LEN}"
                    )
                _setopt(
                    self.sock, uapi.QUIC_SOCKOPT_TRANSPORT_PARAM_EXT, ev.data, "TRANSPORT_PARAM_EXT"
                )
            elif type(ev) is AlpnSelected:
                self.alpn = ev.alpn
                if self.req.role is Role.SERVER:
                    _setopt(self.sock, uapi.QUIC_SOCKOPT_ALPN, ev.alpn, "ALPN")
            elif type(ev) is HandshakeComplete:
                self.info = ev
            elif type(ev) is SessionData:
                self.session_data = ev.data
            # AlertSent: carried by the exception the engine raised

    def _phase_after(self, ev: Secret) -> str:
        if ev.level is CryptoLevel.HANDSHAKE:
            return "exchanging HANDSHAKE messages"
        if ev.level is CryptoLevel.APP:
            return "waiting for the peer's Finished"
        return self.phase

    # -- socket -> engine -----------------------------------------------------------------------
    def drain(self) -> list[tuple[CryptoLevel, bytes]]:
        """Everything readable now. A close (EOF, reset, close event) is recorded in
        ``self.closed`` and ends the batch: data read before it is still processed, so a
        peer that sends its Finished and closes at once still completes the handshake."""
        out: list[tuple[CryptoLevel, bytes]] = []
        while True:
            try:
                data, anc, flags, _addr = self.sock.recvmsg(RECV_BUFSIZE, HANDSHAKE_INFO_CMSG_SPACE)
            except BlockingIOError:
                return out
            except InterruptedError:
                continue
            except OSError as e:
                if e.errno in (errno.ECONNRESET, errno.EPIPE, errno.ENOTCONN):
                    self.closed = _peer_close_error(self.sock)
                    return out
                raise SocketError(f"recvmsg failed: {e.strerror}", e.errno or errno.EIO) from None
            if flags & _MSG_CTRUNC:
                raise BadMessage("recvmsg control data truncated (MSG_CTRUNC)")
            if flags & uapi.MSG_QUIC_NOTIFICATION:
                self.closed = _peer_close_error(self.sock)
                return out
            level = None
            if len(anc) == 1:  # the usual case: one handshake-info cmsg of one byte
                clevel, ctype, payload = anc[0]
                if clevel == uapi.SOL_QUIC and ctype == uapi.QUIC_HANDSHAKE_INFO:
                    level = _LEVEL_BY_PAYLOAD.get(payload)
            if level is None:
                try:
                    level = find_handshake_level(anc)
                except ValueError as e:
                    raise ProtocolViolation(f"bad QUIC_HANDSHAKE_INFO cmsg: {e}") from None
            if level is None:
                if not data:
                    self.closed = _peer_close_error(self.sock)
                    return out
                raise BadMessage(
                    f"recvmsg returned {len(data)} bytes without a QUIC_HANDSHAKE_INFO cmsg "
                    "(uapi mismatch?)"
                )
            if level is CryptoLevel.EARLY:
                raise ProtocolViolation("handshake data received at the EARLY level")
            out.append((level, data))

    def peer_left(self) -> HandshakeError | None:
        """After a socket call failed: the peer's close, if it closed (``self.closed``).

        A close can race the call: a peer that aborts right after its ServerHello is often
        seen only when installing the next key fails (EINVAL, "only while establishing"),
        while its CONNECTION_CLOSE still waits to be read. What is left is read for it:
        the handshake then fails as the peer closed it (EACCES for an alert, ECONNRESET
        otherwise), not with the socket's EINVAL."""
        if self.closed is None:
            try:
                self.drain()
            except HandshakeError:
                pass
        return self.closed

    async def wait_readable(self) -> None:
        remaining = self.deadline - self.loop.time()
        if remaining <= 0:
            raise HandshakeTimeout(f"deadline of {self.req.timeout:g} s passed while {self.phase}")
        # a bare future woken by the reader or the deadline timer (no Task per wait)
        loop = self.loop
        fut: asyncio.Future[bool] = loop.create_future()
        loop.add_reader(self.fd, _wake, fut, True)
        timer = loop.call_at(self.deadline, _wake, fut, False)
        try:
            readable = await fut
        finally:
            loop.remove_reader(self.fd)
            timer.cancel()
        if not readable:
            raise HandshakeTimeout(f"deadline of {self.req.timeout:g} s passed while {self.phase}")

    def finished(self) -> bool:
        return self.info is not None and self.app_secrets >= 2

    # -- the handshake -----------------------------------------------------------------------------
    async def run(self) -> None:
        settings = read_settings(self.sock)
        cfg = engine_config(self.req, settings, peer_address(self.sock))
        self.phase = "starting"
        try:
            self.engine = await self._call(Engine, cfg)
        except GnuTLSError as e:
            raise LocalError(f"cannot set up the TLS session: {e}") from e
        engine = self.engine
        executor = self.req.executor
        await self._call(engine.start)
        client = cfg.role is Role.CLIENT
        self.phase = "waiting for ServerHello" if client else "waiting for ClientHello"
        self.act(engine.events())
        while not self.finished():
            batch = self.drain()
            try:
                for level, data in batch:
                    if executor is None:
                        engine.receive(level, data)
                    else:
                        await self.loop.run_in_executor(executor, engine.receive, level, data)
                    self.act(engine.events())
            except SocketError:
                closed = self.peer_left()
                if closed is not None:  # the socket refused because the peer left
                    raise closed from None
                raise
            if self.finished():
                break
            if self.closed is not None:
                raise self.closed
            if not batch:
                await self.wait_readable()
        if client and settings.config.receive_session_ticket:
            await self.wait_for_ticket(settings.config.receive_session_ticket)

    async def wait_for_ticket(self, seconds: int) -> None:
        """WAITING_FOR_TICKET: the kernel hands the NewSessionTicket over via getsockopt."""
        assert self.engine is not None
        self.phase = "waiting for a session ticket"
        end = min(self.loop.time() + seconds, self.deadline)
        delay = TICKET_POLL_FIRST
        while self.loop.time() < end:
            nst = _sockopt(
                self.sock,
                uapi.QUIC_SOCKOPT_SESSION_TICKET,
                uapi.QUIC_TICKET_MAX_LEN,
                "SESSION_TICKET",
            )
            if nst:
                await self._call(self.engine.receive, CryptoLevel.APP, nst)
                self.act(self.engine.events())
                if self.session_data:
                    if len(self.session_data) <= uapi.QUIC_TICKET_MAX_LEN:
                        _setopt(
                            self.sock,
                            uapi.QUIC_SOCKOPT_SESSION_TICKET,
                            self.session_data,
                            "SESSION_TICKET",
                        )
                    else:
                        log.warning(
                            "session data of %d bytes exceeds the kernel's %d; not stored",
                            len(self.session_data),
                            uapi.QUIC_TICKET_MAX_LEN,
                        )
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, TICKET_POLL_MAX)
        log.debug("no session ticket within %d s", seconds)


async def run_handshake(sock: QuicSocket, req: HandshakeRequest) -> HandshakeResult:
    """Run one handshake; always returns a result whose ``status`` is ready for DONE."""
    start = time.monotonic()
    run = _Run(sock, req)
    err: HandshakeError | None = None
    try:
        await run.run()
    except HandshakeError as e:
        err = e
    except Exception as e:  # our bug: answer EIO, never leave the socket unanswered
        log.exception("unexpected error in the handshake driver")
        err = LocalError(f"internal error: {e!r}")
    finally:
        if run.engine is not None:
            run.engine.close()
    if err is not None:
        cc = close_code(err)
        if cc is not None:
            try:
                sock.setsockopt(
                    uapi.SOL_QUIC,
                    uapi.QUIC_SOCKOPT_CONNECTION_CLOSE,
                    uapi.pack_connection_close(cc),
                )
            except OSError as e:
                log.debug("could not set CONNECTION_CLOSE 0x%x: %s", cc.errcode, e)
        return HandshakeResult(err.status, err, run.info, run.alpn, None, time.monotonic() - start)
    return HandshakeResult(0, None, run.info, run.alpn, run.session_data, time.monotonic() - start)
