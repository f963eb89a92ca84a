# SPDX-License-Identifier: GPL-2.0-or-later
"""One TLS 1.3 handshake on a kernel consumer's TCP socket, then the kTLS hand-over.

The TCP counterpart of :mod:`quichsd.driver`: the same :class:`HandshakeRequest` in, the
same :class:`HandshakeResult` out (status ready for DONE), so :mod:`quichsd.service`
serves both transports with one code path above this. States (one pass)::

    STARTING      build the GnuTLS session on the fd (TCP_NODELAY on while it runs)
    EXCHANGING    gnutls_handshake until it completes; on EAGAIN wait for the fd to be
                  readable or writable (as GnuTLS asks), within the deadline
    HANDING_OVER  nothing may stay buffered in GnuTLS; read both directions' key, IV and
                  sequence number; TCP_ULP "tls", TLS_TX_MAX_PAYLOAD_LEN when the peer
                  limited its records (RFC 8449), TLS_TX, TLS_RX (:mod:`quichsd.ktls`)
    DONE          status 0, or the error's status; a failure's TLS alert goes to the peer
                  first, except once the kernel owns the send side (TLS_TX installed)

Rules: every handshake has a deadline (ETIMEDOUT); the GnuTLS session is freed on every
path and never sends close_notify (the kernel owns the connection); a socket whose
kTLS set-up failed after TLS_TX is shut down, never left half configured.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import time
from collections.abc import Callable
from typing import TypeVar

from . import ktls
from .errors import GnuTLSError, HandshakeError, HandshakeTimeout, LocalError
from .quicsocket import peer_address
from .request import HandshakeRequest, HandshakeResult
from .tls.alerts import ALERT_INTERNAL_ERROR
from .tls.config import EngineConfig, Role
from .tls.events import HandshakeComplete
from .tls.tcp import TcpSession, Want
from .uapi import CertRequest

log = logging.getLogger("quichsd.tcpdriver")

T = TypeVar("T")
#: installs kTLS on the socket (tests on a kernel without kTLS pass a recorder)
KtlsInstaller = Callable[[socket.socket, ktls.TrafficState, ktls.TrafficState, int], None]


def tcp_engine_config(req: HandshakeRequest, peer_address: str | None = None) -> EngineConfig:
    """The TLS session's input for a TCP request (no ALPN, no tickets, no 0-RTT);
    ``peer_address`` (the socket's peer) is verified when the request names no peer."""
    cert_request = req.cert_request
    if cert_request is None:  # a TCP socket has no setting for it: request, as tlshd
        cert_request = CertRequest.REQUEST
    return EngineConfig(
        role=req.role,
        auth=req.auth,
        ciphers=req.policy.ciphers,
        groups=req.policy.groups,
        transport_params=None,
        peer_name=req.peer_name,
        peer_address=req.peer_address or peer_address,
        verify_without_name=req.verify_without_name,
        verify_peer=req.verify_peer,
        cert_request=cert_request,
        x509=req.x509,
        psk_identity=req.psk_identity,
        psk_key=req.psk_key,
        psk_lookup=req.psk_lookup,
        early_data=False,
        resumption_kx=req.policy.resumption_kx,
        priorities=req.priorities,
        keylog=req.keylog,
    )


class _TcpRun:
    def __init__(self, sock: socket.socket, req: HandshakeRequest, install: KtlsInstaller):
        self.sock = sock
        self.req = req
        self.install = install
        self.loop = asyncio.get_running_loop()
        self.deadline = self.loop.time() + req.timeout
        self.session: TcpSession | None = None
        self.info: HandshakeComplete | None = None
        self.phase = "starting"
        self.tx_installed = False
        self.record_limit = 0

    async def _call(self, fn: Callable[..., T], *args: object) -> T:
        if self.req.executor is None:
            return fn(*args)
        return await self.loop.run_in_executor(self.req.executor, fn, *args)

    async def wait(self, want: Want) -> None:
        if self.loop.time() >= self.deadline:
            raise HandshakeTimeout(f"deadline of {self.req.timeout:g} s passed while {self.phase}")
        fut: asyncio.Future[bool] = self.loop.create_future()
        fd = self.sock.fileno()
        add, remove = (
            (self.loop.add_reader, self.loop.remove_reader)
            if want is Want.READ
            else (self.loop.add_writer, self.loop.remove_writer)
        )
        add(fd, _wake, fut, True)
        timer = self.loop.call_at(self.deadline, _wake, fut, False)
        try:
            ready = await fut
        finally:
            remove(fd)
            timer.cancel()
        if not ready:
            raise HandshakeTimeout(f"deadline of {self.req.timeout:g} s passed while {self.phase}")

    async def run(self) -> None:
        cfg = tcp_engine_config(self.req, peer_address(self.sock))
        try:
            self.session = await self._call(TcpSession, cfg, self.sock.fileno())
        except GnuTLSError as e:
            raise LocalError(f"cannot set up the TLS session: {e}") from e
        session = self.session
        client = cfg.role is Role.CLIENT
        self.phase = "waiting for ServerHello" if client else "waiting for ClientHello"
        while True:
            want = await self._call(session.handshake)
            if want is None:
                break
            await self.wait(want)
            if want is Want.READ:  # the peer's first flight has (begun to) come
                self.phase = "exchanging handshake messages"
        self.phase = "handing the session to kTLS"
        self.info = session.completion()
        pending = session.pending()
        if pending:
            raise LocalError(
                f"{pending} bytes of records left buffered in GnuTLS after the handshake; "
                "not handed to kTLS",
                alert=ALERT_INTERNAL_ERROR,
            )
        tx, rx = session.traffic_state(False), session.traffic_state(True)
        limit = session.max_send()
        self.record_limit = limit if limit < ktls.MAX_PLAINTEXT else 0
        try:
            self.install(self.sock, tx, rx, self.record_limit)
        except ktls.KtlsError as e:
            self.tx_installed = e.step.startswith("TLS_RX")
            raise LocalError(
                f"kTLS set-up failed at {e}",
                alert=None if self.tx_installed else ALERT_INTERNAL_ERROR,
                status=errno.EIO,
            ) from None
        self.tx_installed = True
        if self.record_limit:
            log.debug("kTLS records limited to %d bytes (the peer's record_size_limit)", limit)


def _wake(fut: asyncio.Future[bool], ready: bool) -> None:
    if not fut.done():
        fut.set_result(ready)


def _nodelay(sock: socket.socket, on: bool) -> bool | None:
    """Set TCP_NODELAY; returns the previous value (None if it could not be read)."""
    try:
        before = bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, int(on))
    except OSError:
        return None
    return before


async def run_tcp_handshake(
    sock: socket.socket, req: HandshakeRequest, install: KtlsInstaller = ktls.install
) -> HandshakeResult:
    """Run one handshake and the kTLS hand-over; never raises a HandshakeError."""
    start = time.monotonic()
    sock.setblocking(False)
    saved = _nodelay(sock, True)  # handshake flights go out at once, as tlshd does
    run = _TcpRun(sock, req, install)
    err: HandshakeError | None = None
    try:
        await run.run()
    except HandshakeError as e:
        err = e
    except Exception as e:  # our bug: answer EIO, never leave the socket unanswered
        log.exception("unexpected error in the TCP handshake driver")
        err = LocalError(f"internal error: {e!r}", alert=ALERT_INTERNAL_ERROR)
    finally:
        if err is not None and run.session is not None and err.alert is not None:
            if not run.tx_installed and not run.session.send_alert(err.alert):
                log.debug("could not send TLS alert %d to the peer", err.alert)
        if run.session is not None:
            run.session.close()
        if err is not None and run.tx_installed:
            try:  # kTLS half set up: the socket must not be used as it is
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if saved is not None and saved is False:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
            except OSError:
                pass
    elapsed = time.monotonic() - start
    if err is not None:
        return HandshakeResult(err.status, err, run.info, None, None, elapsed)
    return HandshakeResult(0, None, run.info, None, None, elapsed)
