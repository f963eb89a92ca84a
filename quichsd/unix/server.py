# SPDX-License-Identifier: GPL-2.0-or-later
"""The unix service: one connection = one request (HANDSHAKE or START) = one reply.

Per connection: SO_PEERCRED against ``unix_socket.allowed_uids``/``allowed_gids``, the
gids matched also against the peer's supplementary groups (SO_PEERGROUPS) (read
from the service's current config snapshot, so SIGHUP applies to new connections); the
first record within ``unix_socket.idle_timeout_ms``; the handshake within its own deadline
plus :data:`GRACE`; then exactly one RESULT, or one ERROR for refused or malformed input,
and the connection is closed. Every fd received is closed on every path.

Two separate limits. A connection that has sent nothing yet is *idle*: at most
``unix_socket.max_idle_connections`` are kept, and when one more goes idle the oldest idle
one is closed (ERROR EAGAIN), so silent connections can never hold a slot that a client
sending its request needs. Handshakes in flight are capped by ``handshake.max_in_flight``;
beyond it a request gets ERROR EAGAIN. These refusals, an idle
timeout and a uid/gid not allowed are counted in ``quichsd_unix_refused_total`` and
logged at most once per 10 s each (with the count); a malformed or wrong request is
counted there too (``bad_request``) and logged each time. Connections the kernel refuses
because the listen backlog is full never reach the daemon; failed accepts, which let the
backlog fill, are counted in ``quichsd_accept_errors_total``.

Before closing, the daemon shuts down its receiving side and discards every record the
client still had queued (so the client reads our reply, then end of file, never a
reset). Each request ends with one completion line on logger ``quichsd.unix``::

    unix handshake for pid 4242 uid 0 (CLIENTHELLO, X509, socket-ops) done: status 0 OK
    (TLS_AES_128_GCM_SHA256, X25519, alpn h3, 14 ms)
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import time

from .. import metrics, uapi
from ..accept import Throttled, accept_forever
from ..driver import HandshakeResult
from ..errors import errno_name
from ..log import completion_level, event
from ..netlink import AcceptRequest, HandshakeOutcome
from ..netlink.agent import role_name, status_text
from ..service import HandshakeService, completion_summary
from . import codec, listen, wire
from .remote import RemoteQuicSocket

log = logging.getLogger("quichsd.unix")

GRACE = 5.0
#: reasons in quichsd_unix_refused_total, each logged at most once per interval
_REFUSALS = ("idle_limit", "idle_timeout", "busy", "not_allowed")


def result_message(outcome: HandshakeOutcome, result: HandshakeResult | None) -> codec.Result:
    if result is None:
        return codec.Result(outcome.status, error=outcome.reason)
    info = result.info
    return codec.Result(
        status=outcome.status,
        alpn=result.alpn,
        cipher=int(info.cipher) if info else None,
        group=info.group if info else None,
        resumed=bool(info and info.resumed),
        early_data=bool(info and info.early_data_accepted),
        error=result.error.reason if result.error else None,
        elapsed_us=int(result.elapsed * 1e6),
    )


class UnixService:
    def __init__(self, service: HandshakeService) -> None:
        self.service = service
        self.listener: socket.socket | None = None
        self.path: str | None = None  # set when we bound it (and so unlink it)
        self._accept: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        #: connections waiting for their first record, oldest first; the future's result
        #: says why the wait ended ("ready", "timeout", "evicted")
        self._idle: dict[socket.socket, asyncio.Future[str]] = {}
        self._busy = 0  # handshakes in flight
        self._answered: set[socket.socket] = set()  # connections given their final reply
        self._refusals = {r: Throttled(log) for r in _REFUSALS}

    async def start(self) -> str:
        """Listen (systemd's socket, or ``unix_socket.path``); raises ListenError."""
        sock = listen.from_systemd()
        where = "socket from systemd"
        if sock is None:
            us = self.service.snapshot.settings.unix_socket
            self.path = us.path
            sock = listen.bind(us.path, us.mode, us.group)
            where = self.path
        self.listener = sock
        metrics.IN_FLIGHT.add(0, "unix")  # the series exists while we serve
        metrics.UNIX_IDLE.add(0)
        self._accept = asyncio.create_task(
            accept_forever(
                sock, self._accepted, log, "unix", lambda: metrics.ACCEPT_ERRORS.inc("unix")
            )
        )
        return f"unix service on {where}"

    async def stop(self, timeout: float) -> None:
        """Stop accepting; give connections in flight ``timeout`` s, then cancel them."""
        if self._accept is not None:
            self._accept.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accept
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending)

    def _accepted(self, conn: socket.socket, _addr: object) -> None:
        task = asyncio.create_task(self._serve(conn))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, conn: socket.socket) -> None:
        try:
            await self._connection(conn)
        except Exception:
            log.exception("unix: connection handler failed")
            if conn not in self._answered:  # still one final reply
                self._reply(conn, codec.Error(errno.EIO, "internal error in the daemon"), "?")
        finally:
            self._answered.discard(conn)
            _drain(conn)
            conn.close()

    def _reply(self, conn: socket.socket, msg: codec.Message, who: object) -> None:
        if isinstance(msg, codec.Result | codec.Error):
            self._answered.add(conn)
        try:
            wire.send_record(conn, codec.encode(msg))
        except OSError as e:
            log.info("unix: reply to %s not delivered: %s", who, e.strerror or e)

    def _refuse(self, conn: socket.socket, who: object, status: int, text: str) -> None:
        log.warning("unix: %s: %s", who, text)
        self._reply(conn, codec.Error(status, text), who)

    def _bad_request(self, conn: socket.socket, who: object, status: int, text: str) -> None:
        """Refuse a malformed or wrong request (counted as bad_request)."""
        metrics.UNIX_REFUSED.inc("bad_request")
        self._refuse(conn, who, status, text)

    def _shed(self, conn: socket.socket, who: object, reason: str, status: int, text: str) -> None:
        """Refuse under load: counted, and logged at most once per interval."""
        metrics.UNIX_REFUSED.inc(reason)
        self._refusals[reason](logging.WARNING, "unix: %s: %s", who, text)
        self._reply(conn, codec.Error(status, text), who)

    async def _first_record(self, conn: socket.socket, cred: wire.PeerCred) -> wire.Record | None:
        """The request record; None if the connection was refused (idle) instead."""
        loop = asyncio.get_running_loop()
        us = self.service.snapshot.settings.unix_socket
        deadline = loop.time() + us.idle_timeout_ms / 1000
        while True:
            try:
                return wire.recv_record(conn, 1)
            except BlockingIOError:
                pass
            wait: asyncio.Future[str] = loop.create_future()
            self._idle[conn] = wait
            metrics.UNIX_IDLE.set(len(self._idle))
            self._evict(us.max_idle_connections)
            fd = conn.fileno()
            loop.add_reader(fd, _end_wait, wait, "ready")
            timer = loop.call_at(deadline, _end_wait, wait, "timeout")
            try:
                why = await wait
            finally:
                loop.remove_reader(fd)
                timer.cancel()
                if self._idle.get(conn) is wait:
                    del self._idle[conn]
                metrics.UNIX_IDLE.set(len(self._idle))
            if why == "timeout":
                text = f"no request within {us.idle_timeout_ms} ms (unix_socket.idle_timeout_ms)"
                self._shed(conn, cred, "idle_timeout", errno.ETIMEDOUT, text)
                return None
            if why == "evicted":
                text = (
                    f"closed: silent while {us.max_idle_connections} newer connections waited "
                    "(unix_socket.max_idle_connections)"
                )
                self._shed(conn, cred, "idle_limit", errno.EAGAIN, text)
                return None

    def _evict(self, limit: int) -> None:
        """Close the oldest idle connections beyond ``limit``, never the newest (the one
        just added). One whose record has arrived (its task has not run yet) is not idle
        and is skipped."""
        excess = len(self._idle) - limit
        for conn, wait in list(self._idle.items())[:-1]:
            if excess <= 0:
                return
            if not _silent(conn):
                continue
            del self._idle[conn]
            _end_wait(wait, "evicted")
            excess -= 1

    async def _connection(self, conn: socket.socket) -> None:
        cred = wire.peer_credentials(conn)
        us = self.service.snapshot.settings.unix_socket
        if not _allowed(conn, cred, us.allowed_uids, us.allowed_gids):
            text = "refused: uid/gid not in unix_socket.allowed_uids/allowed_gids"
            return self._shed(conn, cred, "not_allowed", errno.EACCES, text)
        try:
            rec = await self._first_record(conn, cred)
        except OSError as e:
            log.info("unix: %s: receive failed: %s", cred, e.strerror or e)
            return
        if rec is None:
            return
        try:
            await self._request(conn, cred, rec)
        finally:
            rec.close_fds()

    async def _request(self, conn: socket.socket, cred: wire.PeerCred, rec: wire.Record) -> None:
        if rec.eof:
            log.info("unix: %s closed without a request", cred)
            return
        if rec.ctrunc or len(rec.fds) > 1:
            n = f"{len(rec.fds)}+" if rec.ctrunc else str(len(rec.fds))
            text = f"{n} file descriptors sent; HANDSHAKE takes exactly one"
            return self._bad_request(conn, cred, errno.ETOOMANYREFS, text)
        if rec.oversized:
            text = f"message exceeds {codec.MAX_MESSAGE} bytes"
            return self._bad_request(conn, cred, errno.EMSGSIZE, text)
        try:
            msg = codec.decode(rec.data)
        except codec.CodecError as e:
            return self._bad_request(conn, cred, e.status, f"malformed request: {e}")
        if not isinstance(msg, codec.Request):
            text = f"expected HANDSHAKE or START, got {type(msg).__name__.upper()}"
            return self._bad_request(conn, cred, errno.EPROTO, text)
        handoff = msg.settings is None
        if handoff != bool(rec.fds):
            text = "HANDSHAKE needs one fd in SCM_RIGHTS; START takes none"
            return self._bad_request(conn, cred, errno.EBADMSG, text)
        limit = self.service.snapshot.settings.handshake.max_in_flight
        if self._busy >= limit:
            text = f"{limit} handshakes in flight (handshake.max_in_flight); try again"
            return self._shed(conn, cred, "busy", errno.EAGAIN, text)
        accept = AcceptRequest(
            sockfd=rec.fds[0] if rec.fds else conn.fileno(),
            message_type=msg.role,
            auth_mode=msg.auth,
            timeout_ms=msg.timeout_ms,
            peer_identities=msg.psk_serials,
            cert_serial=msg.cert_serial,
            privkey_serial=msg.privkey_serial,
            peername=msg.peer_name,
        )
        start = time.monotonic()
        metrics.IN_FLIGHT.add(1, "unix")
        self._busy += 1
        try:
            await self._handshake(conn, cred, msg, rec, accept, start)
        finally:
            self._busy -= 1
            metrics.IN_FLIGHT.add(-1, "unix")

    async def _handshake(
        self,
        conn: socket.socket,
        cred: wire.PeerCred,
        msg: codec.Request,
        rec: wire.Record,
        accept: AcceptRequest,
        start: float,
    ) -> None:
        """Run one handshake; reply once; write the completion line and count it."""
        handoff = msg.settings is None
        limit_s = self.service.timeout(accept) + GRACE
        remote: RemoteQuicSocket | None = None
        fields: tuple[tuple[str, str], ...] = ()
        try:
            async with asyncio.timeout(limit_s):
                if handoff:
                    reply, fields = await self._handoff(accept, rec)
                else:
                    remote = RemoteQuicSocket(conn, msg)
                    outcome, res = await self.service.handle_detailed(accept, conn, remote)
                    reply, fields = result_message(outcome, res), outcome.fields
        except TimeoutError:
            reply = codec.Result(errno.ETIMEDOUT, error=f"no result within {limit_s:g} s")
        except asyncio.CancelledError:  # daemon stopping: still answer, then end
            self._reply(conn, codec.Result(errno.ETIMEDOUT, error="daemon stopping"), cred)
            log.info(
                "unix handshake for %s done: status %s (daemon stopping)",
                cred,
                status_text(errno.ETIMEDOUT),
            )
            self._count(msg, errno.ETIMEDOUT, start)
            raise
        if remote is not None and remote.protocol_error is not None:
            perr = remote.protocol_error
            self._refuse(conn, cred, perr.status, f"malformed socket-ops record: {perr}")
            reply = codec.Result(perr.status, error=str(perr))
        elif remote is None or not remote.gone:
            self._reply(conn, reply, cred)
        source = "fd handoff" if handoff else "socket-ops"
        what = f"{msg.role.name}, {msg.auth.name}, {source}"
        note = reply.error if reply.status else _describe(reply, start)
        line = f"unix handshake for {cred} ({what}) done: status {status_text(reply.status)}"
        log.log(
            completion_level(reply.status),
            "%s%s",
            line,
            f" ({note})" if note else "",
            extra=event(
                "handshake_failed" if reply.status else "handshake_succeeded",
                QUICHSD_PEER=str(cred),
                QUICHSD_PEER_NAME=msg.peer_name,
                QUICHSD_ROLE=role_name(msg.role),
                QUICHSD_AUTH=msg.auth.name.lower(),
                QUICHSD_STATUS=reply.status,
                QUICHSD_ERRNO=errno_name(reply.status),
                QUICHSD_DURATION_MS=f"{(time.monotonic() - start) * 1000:.0f}",
                QUICHSD_SOURCE=source,
                **dict(fields),
            ),
        )
        self._count(msg, reply.status, start)

    @staticmethod
    def _count(msg: codec.Request, status: int, start: float) -> None:
        elapsed = time.monotonic() - start
        metrics.handshake_finished("unix", msg.role, msg.auth, errno_name(status), elapsed)

    async def _handoff(
        self, accept: AcceptRequest, rec: wire.Record
    ) -> tuple[codec.Result, tuple[tuple[str, str], ...]]:
        """The reply to an fd handoff, and the outcome's journal fields."""
        fd = rec.fds.pop()
        try:
            sock = socket.socket(fileno=fd)
        except OSError as e:
            os.close(fd)
            return codec.Result(errno.EOPNOTSUPP, error=f"fd is not a socket ({e.strerror})"), ()
        with sock:
            proto = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PROTOCOL)
            if proto not in (uapi.IPPROTO_QUIC, socket.IPPROTO_TCP):
                text = (
                    f"socket protocol {proto} is neither QUIC ({uapi.IPPROTO_QUIC}) nor TCP "
                    f"({socket.IPPROTO_TCP})"
                )
                return codec.Result(errno.EOPNOTSUPP, error=text), ()
            outcome, res = await self.service.handle_detailed(accept, sock)
            return result_message(outcome, res), outcome.fields


def _allowed(
    conn: socket.socket, cred: wire.PeerCred, uids: tuple[int, ...], gids: tuple[int, ...]
) -> bool:
    """The peer's uid is allowed, or its primary or a supplementary group (as they were at
    its ``connect()``, SO_PEERGROUPS) is."""
    if cred.uid in uids or cred.gid in gids:
        return True
    return bool(gids) and not set(gids).isdisjoint(wire.peer_groups(conn))


def _end_wait(wait: asyncio.Future[str], why: str) -> None:
    if not wait.done():
        wait.set_result(why)


def _silent(conn: socket.socket) -> bool:
    """Nothing queued on ``conn`` (not even end of file)."""
    try:
        conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


def _drain(conn: socket.socket) -> None:
    """Discard every unread record (closing its fds): closing with unread data would make
    the client's next read ECONNRESET instead of our reply. Shutting down our receiving
    side first makes the client's further sends fail (EPIPE) instead of queueing, so the
    queue only shrinks and this ends."""
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_RD)
    while True:
        try:
            rec = wire.recv_record(conn, 1)
        except OSError:
            return
        rec.close_fds()
        if rec.eof:
            return


def _describe(r: codec.Result, start: float) -> str:
    ms = (time.monotonic() - start) * 1000
    return completion_summary(r.cipher, r.group, r.alpn, r.resumed, r.early_data, ms)
