# SPDX-License-Identifier: GPL-2.0-or-later
"""The netlink handshake agent: READY -> ACCEPT -> handler -> DONE, on one event loop.

Concurrency model:

* one *reader* task reads the ``tlshd`` multicast group and never waits on anything but
  the socket: a READY (handler class 1) or a receive error only sets a "drain" flag;
* one *drainer* task sends ACCEPT until the kernel answers ``EAGAIN`` (nothing pending),
  because READY is sent once per request and may be lost (multicast overrun) or folded
  into another; it also drains once at start-up for requests submitted before us;
* each accepted request runs in its own task; at most ``max_in_flight`` at once. At the
  cap the drainer stops ACCEPTing (the kernel keeps the requests pending) and drains
  again as soon as a request finishes;
* ACCEPT installs the request's fd in this process, and if the fd table is full the kernel
  fails the request (the consumer sees EIO). So the drainer also stops while fewer than
  ``fd_reserve`` descriptors are free (RLIMIT_NOFILE against ``/proc/self/fd``), and
  resumes when a request finishes, or after a second if none is in flight. Counting
  ``/proc/self/fd`` costs time in proportion to the fds open, so after a count the next
  ``(free - fd_reserve) // 2`` ACCEPTs go without one (each takes one fd; the other half is
  left for what else opens fds meanwhile): one count per thousands of ACCEPTs at the usual
  limits, one per ACCEPT only when the table is nearly full.

Every accepted fd gets exactly one DONE, from a process holding it (the kernel resolves
DONE's fd in the sender's fd table), and is closed afterwards on every path. Normally the
agent sends it; a handler that ran the handshake in a worker process which sent DONE
itself (:mod:`quichsd.workers`) says so with ``HandshakeOutcome.answered``, and the agent
then only logs the completion line and closes its fd. Each request ends
with one completion line on logger ``quichsd.netlink``::

    handshake for 127.0.0.1:4420 (CLIENTHELLO, PSK) done: status 0 OK
    (TLS_AES_128_GCM_SHA256, X25519, 41 ms, kTLS)
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import resource
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .. import metrics, uapi
from ..errors import HandshakeError, errno_name
from ..log import completion_level, event
from . import codec
from .codec import AcceptRequest, MalformedMessage
from .transport import NetlinkTransport

log = logging.getLogger("quichsd.netlink")

DEFAULT_MAX_IN_FLIGHT = 64
#: descriptors kept free before an ACCEPT (the handshake, a worker hand-over, a log file...)
FD_RESERVE = 32
_FD_RETRY = 1.0
#: (DONE status, REMOTE_AUTH serials, reason for the completion line, DONE already sent,
#: journal fields of the outcome)
_Result = tuple[int, tuple[int, ...], str | None, bool, tuple[tuple[str, str], ...]]
_RECV_BACKOFF_MAX = 5.0


@dataclass(frozen=True, slots=True)
class HandshakeOutcome:
    """What a handler reports: DONE status (positive errno, 0 = success) and, on
    success, the key serials identifying the peer (REMOTE_AUTH)."""

    status: int
    remote_auth: tuple[int, ...] = ()
    reason: str | None = None  # appended to the completion line
    #: DONE was already sent by the process that ran the handshake (it held the fd)
    answered: bool = False
    #: what the handshake negotiated, as journal fields (``QUICHSD_CIPHER``...)
    fields: tuple[tuple[str, str], ...] = ()


#: runs one handshake on an accepted QUIC socket. ``sock`` is the handler's own dup of
#: the accepted fd (``request.sockfd`` stays with the agent for DONE); it is closed
#: when the handler returns. Handshake failures are best raised as
#: :class:`quichsd.errors.HandshakeError` (its ``status`` goes to DONE) or returned.
Handler = Callable[[AcceptRequest, socket.socket], Awaitable[HandshakeOutcome]]


#: QUICHSD_ROLE: the side quichsd plays (the kernel asks for a ClientHello or ServerHello)
_ROLES: dict[int, str] = {
    int(uapi.MsgType.CLIENTHELLO): "client",
    int(uapi.MsgType.SERVERHELLO): "server",
}


def role_name(message_type: int) -> str:
    """``client``/``server`` for a handshake's message type (its number if unknown)."""
    return _ROLES.get(int(message_type), str(int(message_type)))


def status_text(status: int) -> str:
    """``95 EOPNOTSUPP``; ``0 OK``."""
    return f"{status} {errno_name(status)}"


def format_peer(sock: socket.socket) -> str:
    try:
        addr = sock.getpeername()
    except OSError as exc:
        return f"<no peer: {errno_name(exc.errno or 0)}>"
    if isinstance(addr, tuple) and len(addr) >= 2:
        host, port = addr[0], addr[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return f"unix:{addr!r}" if addr else "<unnamed unix peer>"


def _checked_status(status: int) -> tuple[int, str | None]:
    """A status that is valid on the wire, and a note when it had to be changed."""
    if 0 <= status <= uapi.MAX_ERRNO:
        return status, None
    if -uapi.MAX_ERRNO <= status < 0:
        return -status, f"handler returned negative status {status}"
    return errno.EIO, f"handler returned out-of-range status {status}"


def free_fds() -> int:
    """File descriptors this process may still open (soft RLIMIT_NOFILE minus open ones)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1 << 30
    return soft - len(os.listdir("/proc/self/fd"))


class HandshakeAgent:
    """Serve the kernel's handshake requests of handler class ``tlshd``."""

    def __init__(
        self,
        transport: NetlinkTransport,
        handler: Handler,
        *,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        quic_protocol: int = uapi.IPPROTO_QUIC,
        fd_reserve: int = FD_RESERVE,
    ) -> None:
        """``quic_protocol`` is the ``SO_PROTOCOL`` value whose sockets go to ``handler``
        besides TCP's (anything else is answered EOPNOTSUPP); only tests change it, to
        reach the QUIC handler path with ordinary sockets on a kernel without QUIC."""
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        self._transport = transport
        self._handler = handler
        self._max_in_flight = max_in_flight
        self._quic_protocol = quic_protocol
        self._draining = False
        self._requests: set[asyncio.Task[None]] = set()
        self._drain_wanted = asyncio.Event()
        self._capped = False
        self._service: list[asyncio.Task[None]] = []
        self._accepting = True
        self._fd_reserve = fd_reserve
        self._fd_short = False  # warned about the fd reserve; reset once it is back
        self._fd_budget = 0  # ACCEPTs that may go before the fds are counted again

    @property
    def in_flight(self) -> int:
        return len(self._requests)

    async def start(self) -> None:
        """Join the group, then start reading and drain once.

        Raises :class:`~quichsd.netlink.transport.HandshakeFamilyUnavailable` when the
        kernel has no ``handshake`` family.
        """
        await self._transport.open()
        metrics.IN_FLIGHT.add(0, "netlink")  # the series exists while we serve
        self._drain_wanted.set()  # requests submitted before we joined
        self._service = [
            asyncio.create_task(self._read_loop(), name="netlink-reader"),
            asyncio.create_task(self._drain_loop(), name="netlink-drainer"),
        ]

    async def wait_idle(self) -> None:
        """Return once no request is in flight and no drain is pending (for tests)."""
        while self._requests or self._draining or self._drain_wanted.is_set():
            await asyncio.sleep(0.005)

    async def stop(self, timeout: float | None = None) -> None:
        """Stop accepting; let requests in flight finish (cancelled after ``timeout``,
        which still answers DONE and closes their fds); close the transport."""
        self._accepting = False
        # an ACCEPT already sent may come back with an fd the kernel installed for us: let
        # the drainer finish that round trip (bounded by the transport's request timeout)
        # so the request is served or answered, instead of cancelling it mid-flight
        while self._draining:
            await asyncio.sleep(0.01)
        for task in self._service:
            task.cancel()
        await asyncio.gather(*self._service, return_exceptions=True)
        pending = set(self._requests)
        if pending:
            _done, late = await asyncio.wait(pending, timeout=timeout)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        await self._transport.close()

    # --- multicast side ---------------------------------------------------------------

    async def _read_loop(self) -> None:
        failures = 0
        while True:
            try:
                batch = await self._transport.recv()
            except Exception as exc:  # the reader must survive anything
                failures += 1
                code = exc.errno if isinstance(exc, OSError) else None
                name = errno_name(code) if code else type(exc).__name__
                log.warning("netlink receive error %s (%s): draining pending requests", name, exc)
                self._drain_wanted.set()
                if failures > 1:
                    await asyncio.sleep(min(0.05 * 2 ** (failures - 2), _RECV_BACKOFF_MAX))
                continue
            failures = 0
            for data in batch:
                self._on_multicast(data)

    def _on_multicast(self, data: bytes) -> None:
        err = codec.decode_error(data)
        if err is not None:  # stray ACK (0) or error on the multicast socket
            if err:
                log.debug("netlink: error message %s on the multicast socket", status_text(err))
            return
        try:
            msg = codec.parse_message(data)
            if msg.nl_type != self._transport.family_id:
                log.debug("netlink: ignoring message type %d", msg.nl_type)
                return
            handler_class = codec.decode_ready(msg)
        except MalformedMessage as exc:
            log.warning("netlink: ignoring malformed READY: %s", exc)
            return
        if handler_class != uapi.HANDSHAKE_HANDLER_CLASS_TLSHD:
            log.debug("netlink: ignoring READY for handler class %s", handler_class)
            return
        self._drain_wanted.set()

    # --- ACCEPT side ------------------------------------------------------------------

    async def _drain_loop(self) -> None:
        body = codec.encode_accept_request()
        while True:
            await self._drain_wanted.wait()
            self._drain_wanted.clear()
            self._draining = True
            try:
                await self._drain(body)
            finally:
                self._draining = False

    async def _drain(self, body: bytes) -> None:
        """ACCEPT until EAGAIN, an error, or the in-flight cap."""
        while self._accepting:
            if len(self._requests) >= self._max_in_flight:
                self._capped = True  # resume when a request finishes
                break
            if self._short_of_fds():
                break
            try:
                replies = await self._transport.request(body, codec.NLM_F_REQUEST)
            except Exception as exc:  # the drainer must survive anything
                code = exc.errno if isinstance(exc, OSError) else None
                metrics.NETLINK_ACCEPTS.inc("eagain" if code == errno.EAGAIN else "error")
                if code == errno.EAGAIN:
                    log.debug("netlink: ACCEPT -> EAGAIN (nothing pending, or another agent won)")
                elif code == errno.EPERM:
                    log.error("netlink: ACCEPT -> EPERM: the agent needs CAP_NET_ADMIN")
                else:
                    log.error("netlink: ACCEPT failed: %s", exc)
                break
            if not replies:
                metrics.NETLINK_ACCEPTS.inc("error")
                log.error("netlink: ACCEPT answered without a reply message")
                break
            metrics.NETLINK_ACCEPTS.inc("ok")
            for reply in replies:
                self._spawn(reply)

    def _short_of_fds(self) -> bool:
        """True (and the drain rescheduled) while fewer than ``fd_reserve`` fds are free."""
        if self._fd_budget > 0:
            self._fd_budget -= 1
            return False
        free = free_fds()
        if free >= self._fd_reserve:
            self._fd_budget = (free - self._fd_reserve) // 2
            if self._fd_short:
                self._fd_short = False
                log.warning("netlink: %d file descriptors free again: accepting requests", free)
            return False
        if not self._fd_short:
            self._fd_short = True
            log.warning(
                "netlink: only %d file descriptors free (RLIMIT_NOFILE %d, keeping %d): "
                "not accepting requests until some are released",
                free,
                resource.getrlimit(resource.RLIMIT_NOFILE)[0],
                self._fd_reserve,
            )
        if self._requests:
            self._capped = True  # a finishing request frees its fd and drains again
        else:
            asyncio.get_running_loop().call_later(_FD_RETRY, self._drain_wanted.set)
        return True

    def _spawn(self, reply: bytes) -> None:
        task = asyncio.create_task(self._serve(reply), name="handshake-request")
        self._requests.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._requests.discard(task)
        if self._capped and self._accepting:
            self._capped = False
            self._drain_wanted.set()

    # --- one request ------------------------------------------------------------------

    async def _serve(self, reply: bytes) -> None:
        """Answer exactly one DONE for the fd in ``reply`` and close it, whatever happens."""
        started = time.monotonic()
        metrics.IN_FLIGHT.add(1, "netlink")
        try:
            await self._serve_one(reply, started)
        finally:
            metrics.IN_FLIGHT.add(-1, "netlink")

    async def _serve_one(self, reply: bytes, started: float) -> None:
        request: AcceptRequest | None = None
        try:
            request = codec.decode_accept_reply(codec.parse_message(reply))
            sockfd = request.sockfd
        except MalformedMessage as exc:
            if exc.sockfd is None:
                log.error("netlink: malformed ACCEPT reply without a usable SOCKFD: %s", exc)
                return
            sockfd = exc.sockfd
            result: _Result = (exc.status, (), f"malformed ACCEPT reply: {exc}", False, ())
        sock: socket.socket | None = None
        peer = "<unknown peer>"
        try:
            try:
                sock = socket.socket(fileno=sockfd)
            except OSError as exc:
                why = f"accepted fd {sockfd} is not a usable socket: {exc}"
                result = (errno.EINVAL, (), why, False, ())
            else:
                # the peer as accepted: once DONE is sent (by a worker, before this line's
                # turn) the consumer may already have closed it (getpeername: ENOTCONN)
                peer = format_peer(sock)
                if request is not None:
                    result = await self._run(request, sock)
            await self._answer(sockfd, peer, request, result, started)
        finally:
            if sock is not None:
                sock.close()
            else:
                with contextlib.suppress(OSError):
                    os.close(sockfd)

    async def _run(self, request: AcceptRequest, sock: socket.socket) -> _Result:
        try:
            proto = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PROTOCOL)
        except OSError as exc:
            why = f"accepted fd {request.sockfd}: SO_PROTOCOL: {exc}"
            return errno.EINVAL, (), why, False, ()
        if proto not in (self._quic_protocol, socket.IPPROTO_TCP):
            why = f"socket protocol {proto} is neither QUIC nor TCP"
            return errno.EOPNOTSUPP, (), why, False, ()
        return await run_handler(self._handler, request, sock)

    async def _answer(
        self,
        sockfd: int,
        peer: str,
        request: AcceptRequest | None,
        result: _Result,
        started: float,
    ) -> None:
        status, remote_auth, reason, answered, fields = result
        what = f"{request.message_type.name}, {request.auth_mode.name}" if request else "UNKNOWN"
        line = f"handshake for {peer} ({what}) done: status {status_text(status)}"
        log.log(
            completion_level(status),
            "%s%s",
            line,
            f" ({reason})" if reason else "",
            extra=event(
                "handshake_failed" if status else "handshake_succeeded",
                QUICHSD_PEER=peer,
                QUICHSD_PEER_NAME=request.peername if request else None,
                QUICHSD_ROLE=role_name(request.message_type) if request else None,
                QUICHSD_AUTH=request.auth_mode.name.lower() if request else None,
                QUICHSD_STATUS=status,
                QUICHSD_ERRNO=errno_name(status),
                QUICHSD_DURATION_MS=f"{(time.monotonic() - started) * 1000:.0f}",
                QUICHSD_SOURCE="netlink",
                **dict(fields),
            ),
        )
        metrics.handshake_finished(
            "netlink",
            request.message_type if request else None,
            request.auth_mode if request else None,
            errno_name(status),
            time.monotonic() - started,
        )
        if not answered:
            await send_done(self._transport, sockfd, status, remote_auth, peer)


async def run_handler(handler: Handler, request: AcceptRequest, sock: socket.socket) -> _Result:
    """Run ``handler`` on a dup of ``sock``; every failure becomes a DONE status."""
    try:
        with sock.dup() as own:  # the handler may close its copy; DONE names ours
            outcome = await handler(request, own)
        status, note = _checked_status(outcome.status)
        remote_auth = tuple(int(x) for x in outcome.remote_auth) if status == 0 else ()
        if any(not 0 <= x < 2**32 for x in remote_auth):
            status, note = errno.EIO, f"handler returned invalid key serials {remote_auth}"
            remote_auth = ()
    except HandshakeError as exc:
        return exc.status, (), f"{type(exc).__name__}: {exc}", False, ()
    except Exception as exc:
        log.exception("handshake handler failed on fd %d", request.sockfd)
        return errno.EIO, (), f"handler raised {type(exc).__name__}: {exc}", False, ()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()  # still answer DONE below; the task then ends normally
        return errno.EIO, (), "agent shutting down", False, ()
    reason = "; ".join(r for r in (outcome.reason, note) if r) or None
    return status, remote_auth, reason, outcome.answered, outcome.fields


async def send_done(
    transport: NetlinkTransport, sockfd: int, status: int, remote_auth: tuple[int, ...], peer: str
) -> str | None:
    """Send DONE for ``sockfd`` (an fd of this process); a failure is logged and returned
    as text (the fd is closed by the caller either way)."""
    try:
        body = codec.encode_done(status, sockfd, remote_auth)
        await transport.request(body, codec.NLM_F_REQUEST | codec.NLM_F_ACK)
    except Exception as exc:
        code = exc.errno if isinstance(exc, OSError) else None
        name = errno_name(code) if code else type(exc).__name__
        log.warning("netlink: DONE for %s (fd %d) failed: %s %s", peer, sockfd, name, exc)
        return f"DONE failed: {name} {exc}"
    return None
