# SPDX-License-Identifier: GPL-2.0-or-later
"""Client side of socket-ops: bridge a local QuicSocket to the daemon's unix service.

The QUIC stack stays here (e.g. :class:`quichsd.userspace.aioquic.UserspaceQuicSocket`);
the TLS handshake runs in the daemon with the daemon's credentials and policy.
:func:`handshake_via` sends START with the socket's settings, then applies the daemon's
SEND_CRYPTO / SET_SOCKOPT records to the local socket and forwards what the socket
receives (CRYPTO, CLOSED, and a client's NewSessionTicket as OPTION) until RESULT.

Connecting waits for the daemon: a non-blocking ``connect()`` to a unix socket whose
backlog is full fails with EAGAIN without connecting (asyncio's ``sock_connect`` would
then report success on a socket that is not connected), so :func:`connect` retries with a
short, growing, jittered pause until it is connected or the handshake's time is up. The
daemon replies and then closes, and its closing makes further sends fail (EPIPE): a
failed send therefore first reads what the daemon sent, and reports its RESULT or ERROR
when there is one, the send error only when there is none.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import random
import socket
from dataclasses import dataclass

from .. import uapi
from ..quicsocket import QuicSocket, find_handshake_level, getsockopt_bytes, handshake_cmsg
from . import codec, wire

#: how often a client's socket is polled for its NewSessionTicket (the kernel's
#: SESSION_TICKET getsockopt has no readiness event either)
POLL_INTERVAL = 0.05
#: extra time beyond the handshake's timeout before the client gives up on a RESULT
MARGIN = 10.0
#: first and longest pause between connect attempts while the daemon's backlog is full
CONNECT_RETRY = (0.001, 0.05)


class ViaError(Exception):
    """The daemon refused the request (ERROR reply) or the connection failed."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"{errno.errorcode.get(status, status)}: {text}")
        self.status = status
        self.text = text


class _SendFailed(Exception):
    """A send to the daemon failed; the daemon's reply, if queued, takes precedence."""

    def __init__(self, error: ViaError) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass(frozen=True)
class ViaRequest:
    role: uapi.MsgType  # CLIENTHELLO = we are the client
    auth: uapi.AuthMode = uapi.AuthMode.X509
    peer_name: str | None = None
    timeout_ms: int | None = None
    psk_serials: tuple[int, ...] = ()


def start_message(sock: QuicSocket, req: ViaRequest) -> codec.Request:
    def opt(name: int, size: int) -> bytes:
        return getsockopt_bytes(sock, uapi.SOL_QUIC, name, size)

    settings = codec.SocketSettings(
        config=opt(uapi.QUIC_SOCKOPT_CONFIG, uapi.CONFIG_SIZE),
        alpn=opt(uapi.QUIC_SOCKOPT_ALPN, uapi.QUIC_ALPN_MAX_LEN),
        session_ticket=opt(uapi.QUIC_SOCKOPT_SESSION_TICKET, uapi.QUIC_TICKET_MAX_LEN),
        transport_param_ext=opt(uapi.QUIC_SOCKOPT_TRANSPORT_PARAM_EXT, uapi.QUIC_TP_EXT_MAX_LEN),
    )
    return codec.Request(
        role=req.role,
        auth=req.auth,
        peer_name=req.peer_name,
        timeout_ms=req.timeout_ms,
        psk_serials=req.psk_serials,
        settings=settings,
    )


def _receive(conn: socket.socket) -> codec.Message | None:
    """The next message from the daemon; None if none is queued."""
    reset = False
    while True:
        try:
            rec = wire.recv_record(conn, 1)
            break
        except BlockingIOError:
            return None
        except ConnectionResetError:
            # the daemon closed with records of ours unread: the error is reported
            # once, before the records it had sent us (its reply among them)
            if reset:
                raise ViaError(errno.ECONNRESET, "receive: connection reset") from None
            reset = True
        except OSError as e:
            raise ViaError(e.errno or errno.EIO, f"receive: {e.strerror}") from None
    rec.close_fds()
    if rec.eof:
        raise ViaError(errno.ECONNRESET, "the daemon closed the connection, no RESULT")
    try:
        return codec.decode(rec.data)
    except codec.CodecError as e:
        raise ViaError(e.status, f"bad record from the daemon: {e}") from None


class _Bridge:
    def __init__(self, conn: socket.socket, sock: QuicSocket, start: codec.Request) -> None:
        assert start.settings is not None
        self.conn = conn
        self.sock = sock
        self.client = start.role is uapi.MsgType.CLIENTHELLO
        self.want_ticket = bool(uapi.unpack_config(start.settings.config).receive_session_ticket)
        self.app_secrets: set[bool] = set()
        self.local_closed = False
        self.ticket_sent = False
        #: the daemon closed its end (after its RESULT, which is still to be read)
        self.daemon_closed = False

    def send(self, msg: codec.Message) -> None:
        if self.daemon_closed:
            return
        try:
            wire.send_record(self.conn, codec.encode(msg))
        except BlockingIOError:
            raise ViaError(errno.ENOBUFS, "the daemon does not read its connection") from None
        except (BrokenPipeError, ConnectionResetError):
            # the daemon finished (e.g. the peer closed) while we were still talking: its
            # RESULT, queued before it closed, is read next, and says how it ended
            self.daemon_closed = True
        except OSError as e:
            err = ViaError(e.errno or errno.EIO, f"send to the daemon: {e.strerror}")
            raise _SendFailed(err) from None

    def _next(self) -> codec.Message | None:
        """The next message from the daemon; None if none is queued."""
        return _receive(self.conn)

    def from_daemon(self) -> codec.Result | None:
        """Apply everything the daemon sent; the RESULT once it arrives."""
        while (msg := self._next()) is not None:
            if isinstance(msg, codec.Result):
                return msg
            if isinstance(msg, codec.Error):
                raise ViaError(msg.status, msg.text)
            try:
                self.apply(msg)
            except OSError as e:
                # a local socket that failed because its connection closed: the daemon
                # hears of the close first (CLOSED), then of the failure it caused
                self.from_socket()
                self.send(codec.OpError(e.errno or errno.EIO, str(e.strerror or e)))
        return None

    def reply_after(self, failed: _SendFailed) -> codec.Result:
        """The daemon's final reply after a send failed (it replies before it closes);
        the send error if it closed without one."""
        try:
            while (msg := self._next()) is not None:
                if isinstance(msg, codec.Result):
                    return msg
                if isinstance(msg, codec.Error):
                    raise ViaError(msg.status, msg.text)
        except ViaError as e:
            if e.status != errno.ECONNRESET:
                raise
        raise failed.error

    def apply(self, msg: codec.Message) -> None:
        if isinstance(msg, codec.Crypto) and msg.outgoing:
            flags = socket.MSG_MORE if msg.more else 0
            self.sock.sendmsg([msg.data], [handshake_cmsg(msg.level)], flags)
        elif isinstance(msg, codec.Option) and msg.outgoing:
            if msg.option == uapi.QUIC_SOCKOPT_CRYPTO_SECRET:
                s = uapi.unpack_crypto_secret(msg.value)
                if s.level is uapi.CryptoLevel.APP:
                    self.app_secrets.add(s.send)
            self.sock.setsockopt(uapi.SOL_QUIC, msg.option, msg.value)
        else:
            raise ViaError(errno.EPROTO, f"unexpected {type(msg).__name__} from the daemon")

    def from_socket(self) -> None:
        """Forward what the local socket received."""
        while not self.local_closed:
            try:
                data, anc, _flags, _ = self.sock.recvmsg(65536, socket.CMSG_SPACE(8))
            except BlockingIOError:
                break
            except OSError:
                self.local_closed = True
                self.send(codec.Closed(None))
                break
            level = find_handshake_level(anc)
            if level is None:
                self.local_closed = True
                self.send(codec.Closed(self._close_info()))
                break
            for i in range(0, len(data), codec.MAX_CHUNK):
                self.send(codec.Crypto(level, data[i : i + codec.MAX_CHUNK]))
        if self.client and self.want_ticket and len(self.app_secrets) == 2:
            if not self.ticket_sent and not self.local_closed:
                nst = getsockopt_bytes(
                    self.sock,
                    uapi.SOL_QUIC,
                    uapi.QUIC_SOCKOPT_SESSION_TICKET,
                    uapi.QUIC_TICKET_MAX_LEN,
                )
                if nst:
                    self.send(codec.Option(uapi.QUIC_SOCKOPT_SESSION_TICKET, nst))
                    self.ticket_sent = True

    def _close_info(self) -> bytes | None:
        try:
            raw = self.sock.getsockopt(
                uapi.SOL_QUIC, uapi.QUIC_SOCKOPT_CONNECTION_CLOSE, uapi.CONNECTION_CLOSE_SIZE
            )
        except OSError:
            return None
        return bytes(raw)


async def handshake_via(path: str, sock: QuicSocket, req: ViaRequest) -> codec.Result:
    """One handshake on ``sock`` run by the daemon listening on ``path``; the RESULT.

    Raises :class:`ViaError` when the daemon refuses the request or cannot be reached.
    """
    loop = asyncio.get_running_loop()
    start = start_message(sock, req)
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    conn.setblocking(False)
    readers: list[int] = []
    limit = (req.timeout_ms or 600_000) / 1000 + MARGIN
    try:
        async with asyncio.timeout(limit):
            await connect(conn, path)
            bridge = _Bridge(conn, sock, start)
            try:
                bridge.send(start)
                wake = asyncio.Event()
                for fd in (conn.fileno(), sock.fileno()):
                    loop.add_reader(fd, wake.set)
                    readers.append(fd)
                while True:
                    wake.clear()
                    result = bridge.from_daemon()
                    if result is not None:
                        return result
                    bridge.from_socket()
                    if bridge.local_closed and sock.fileno() in readers:
                        loop.remove_reader(sock.fileno())
                        readers.remove(sock.fileno())
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), POLL_INTERVAL)
            except _SendFailed as e:
                return bridge.reply_after(e)
    except TimeoutError:
        raise ViaError(errno.ETIMEDOUT, "no RESULT from the daemon in time") from None
    finally:
        for fd in readers:
            loop.remove_reader(fd)
        conn.close()


async def hand_off(path: str, fd: int, req: ViaRequest) -> codec.Result:
    """fd handoff: the daemon listening on ``path`` runs the whole handshake on ``fd`` (a
    kernel IPPROTO_QUIC socket, or a connected TCP socket it leaves keyed for kTLS); the
    RESULT. The daemon works on its own copy of the fd; ours stays open.

    Raises :class:`ViaError` when the daemon refuses the request or cannot be reached.
    """
    loop = asyncio.get_running_loop()
    msg = codec.Request(
        role=req.role,
        auth=req.auth,
        peer_name=req.peer_name,
        timeout_ms=req.timeout_ms,
        psk_serials=req.psk_serials,
    )
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    conn.setblocking(False)
    limit = (req.timeout_ms or 600_000) / 1000 + MARGIN
    try:
        async with asyncio.timeout(limit):
            await connect(conn, path)
            try:
                wire.send_record(conn, codec.encode(msg), [fd])
            except OSError as e:
                raise ViaError(e.errno or errno.EIO, f"send to the daemon: {e.strerror}") from None
            while True:
                reply = _receive(conn)
                if isinstance(reply, codec.Result):
                    return reply
                if isinstance(reply, codec.Error):
                    raise ViaError(reply.status, reply.text)
                if reply is not None:
                    raise ViaError(
                        errno.EPROTO, f"unexpected {type(reply).__name__} from the daemon"
                    )
                readable = loop.create_future()
                loop.add_reader(conn.fileno(), readable.set_result, None)
                try:
                    await readable
                finally:
                    loop.remove_reader(conn.fileno())
    except TimeoutError:
        raise ViaError(errno.ETIMEDOUT, "no RESULT from the daemon in time") from None
    finally:
        conn.close()


async def connect(conn: socket.socket, path: str) -> None:
    """Connect the non-blocking ``conn`` to ``path``, waiting while the daemon's backlog is
    full (EAGAIN); the caller bounds the wait. ViaError for any other failure."""
    pause = CONNECT_RETRY[0]
    while True:
        try:
            conn.connect(path)
            return
        except BlockingIOError:
            pass
        except OSError as e:
            raise ViaError(e.errno or errno.EIO, f"{path}: {e.strerror}") from None
        await asyncio.sleep(pause * (0.5 + random.random()))
        pause = min(pause * 2, CONNECT_RETRY[1])
