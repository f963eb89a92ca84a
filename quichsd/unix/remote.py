# SPDX-License-Identifier: GPL-2.0-or-later
"""A QuicSocket whose operations travel to a unix-service client (socket-ops).

The daemon runs the ordinary driver (``run_handshake``) on :class:`RemoteQuicSocket`:

* ``getsockopt`` is answered from the START request's socket settings, and later from
  OPTION updates the client pushes (the NewSessionTicket, the peer's CONNECTION_CLOSE);
* ``sendmsg`` becomes SEND_CRYPTO records, ``setsockopt`` SET_SOCKOPT records;
* ``recvmsg`` returns the CRYPTO records the client pushes, EOF after CLOSED or when the
  client leaves;
* ``fileno`` is the unix connection, readable when the client sent something.

Nothing here blocks: records are read with MSG_DONTWAIT when the driver asks, and a client
that does not read its replies (full queue) fails the handshake at once (ENOBUFS).
Malformed client input is kept in :attr:`protocol_error`; the server answers it with ERROR.
"""

from __future__ import annotations

import errno
import socket
from collections import deque
from collections.abc import Iterable
from typing import Any

from .. import uapi
from ..quicsocket import Ancillary, find_handshake_level
from . import codec, wire

#: handshake bytes the client may push ahead of the driver (the driver caps a handshake at
#: 128 KiB of TLS data; this is the queue, not the total)
MAX_INBOX = 256 * 1024


def _oserror(code: int, what: str) -> OSError:
    return OSError(code, f"{errno.errorcode.get(code, code)}: {what}")


class RemoteQuicSocket:
    """The QuicSocket contract over one socket-ops connection."""

    def __init__(self, conn: socket.socket, request: codec.Request) -> None:
        assert request.settings is not None
        self._conn = conn
        self._settings = request.settings
        self._client = request.role is uapi.MsgType.CLIENTHELLO
        self._inbox: deque[tuple[uapi.CryptoLevel, bytes]] = deque()
        self._inbox_bytes = 0
        self._app_secrets: set[bool] = set()
        self._alpn: bytes | None = None
        self._nst = b""
        self._close_info: bytes | None = None
        self._client_error: OSError | None = None
        self.eof = False  # the client's QUIC connection ended (CLOSED)
        self.gone = False  # the client closed the unix connection
        self.closed = False
        self.protocol_error: codec.CodecError | None = None

    # -- client -> daemon ---------------------------------------------------------------------
    def _fail(self, status: int, text: str) -> None:
        if self.protocol_error is None:
            self.protocol_error = codec.CodecError(status, text)

    def pump(self) -> None:
        """Read every record the client has sent so far."""
        while not self.gone and self.protocol_error is None:
            try:
                rec = wire.recv_record(self._conn, 1)
            except BlockingIOError:
                return
            except InterruptedError:
                continue
            except OSError:
                self.gone = True
                return
            if rec.eof:
                self.gone = True
                return
            if rec.fds or rec.ctrunc:
                rec.close_fds()
                self._fail(errno.EBADMSG, "file descriptors are only accepted with HANDSHAKE")
                return
            if rec.oversized:
                self._fail(errno.EMSGSIZE, f"record exceeds {codec.MAX_MESSAGE} bytes")
                return
            try:
                msg = codec.decode(rec.data)
            except codec.CodecError as e:
                self.protocol_error = e
                return
            self._dispatch(msg)

    def _dispatch(self, msg: codec.Message) -> None:
        if isinstance(msg, codec.Crypto) and not msg.outgoing:
            self._inbox_bytes += len(msg.data)
            if self._inbox_bytes > MAX_INBOX:
                self._fail(errno.ENOBUFS, f"more than {MAX_INBOX} bytes of CRYPTO queued")
                return
            self._inbox.append((msg.level, msg.data))
        elif isinstance(msg, codec.Option) and not msg.outgoing:
            if msg.option == uapi.QUIC_SOCKOPT_SESSION_TICKET:
                self._nst = msg.value
            else:
                self._close_info = msg.value
        elif isinstance(msg, codec.Closed):
            self.eof = True
            if msg.close is not None:
                self._close_info = msg.close
        elif isinstance(msg, codec.OpError):
            if self._client_error is None:
                self._client_error = _oserror(msg.status, f"client's QUIC stack: {msg.text}")
        else:
            name = type(msg).__name__.upper()
            self._fail(errno.EPROTO, f"{name} is not expected during a handshake")

    def _check(self) -> None:
        if self.protocol_error is not None:
            e = self.protocol_error
            raise _oserror(e.status, f"client sent a bad record: {e}")
        if self._client_error is not None:
            raise self._client_error

    # -- daemon -> client ---------------------------------------------------------------------
    def _send(self, msg: codec.Message) -> None:
        if self.gone or self.closed:
            raise _oserror(errno.EPIPE, "the unix client has gone")
        try:
            wire.send_record(self._conn, codec.encode(msg))
        except BlockingIOError:
            raise _oserror(errno.ENOBUFS, "the unix client does not read its replies") from None
        except OSError:
            self.gone = True
            raise _oserror(errno.EPIPE, "the unix client has gone") from None

    # -- QuicSocket ---------------------------------------------------------------------------
    def fileno(self) -> int:
        return self._conn.fileno()

    def setblocking(self, flag: bool, /) -> None:
        """The connection is always non-blocking here."""

    def getpeername(self) -> Any:
        return None

    def getsockopt(self, level: int, optname: int, buflen: int = 0, /) -> Any:
        if level == socket.SOL_SOCKET and optname == socket.SO_PROTOCOL:
            return uapi.IPPROTO_QUIC
        if level != uapi.SOL_QUIC:
            raise _oserror(errno.ENOPROTOOPT, f"level {level} option {optname} not supported")
        self.pump()
        s = self._settings
        if optname == uapi.QUIC_SOCKOPT_ALPN:
            value = self._alpn or s.alpn
        elif optname == uapi.QUIC_SOCKOPT_CONFIG:
            value = s.config
        elif optname == uapi.QUIC_SOCKOPT_TRANSPORT_PARAM_EXT:
            value = s.transport_param_ext
        elif optname == uapi.QUIC_SOCKOPT_SESSION_TICKET:
            # a client's socket answers with the NewSessionTicket once established
            established = len(self._app_secrets) == 2
            value = self._nst if self._client and established else s.session_ticket
        elif optname == uapi.QUIC_SOCKOPT_CONNECTION_CLOSE:
            if self._close_info is None:
                raise _oserror(errno.ENOTCONN, "the client reported no CONNECTION_CLOSE")
            value = self._close_info
        else:
            raise _oserror(errno.ENOPROTOOPT, f"SOL_QUIC option {optname} not supported")
        if len(value) > buflen:
            raise _oserror(errno.EINVAL, f"option {optname} needs {len(value)} bytes")
        return value

    def setsockopt(self, level: int, optname: int, value: bytes, /) -> None:
        if level != uapi.SOL_QUIC:
            raise _oserror(errno.ENOPROTOOPT, f"level {level} is not SOL_QUIC")
        value = bytes(value)
        if len(value) > uapi.QUIC_TICKET_MAX_LEN:
            raise _oserror(errno.EINVAL, f"option value of {len(value)} bytes exceeds 4096")
        self.pump()
        if optname != uapi.QUIC_SOCKOPT_CONNECTION_CLOSE:
            self._check()
        self._send(codec.Option(optname, value, outgoing=True))
        if optname == uapi.QUIC_SOCKOPT_CRYPTO_SECRET:
            secret = uapi.unpack_crypto_secret(value)
            if secret.level is uapi.CryptoLevel.APP:
                self._app_secrets.add(secret.send)
        elif optname == uapi.QUIC_SOCKOPT_ALPN:
            self._alpn = value

    def sendmsg(
        self,
        buffers: Iterable[bytes],
        ancdata: Iterable[tuple[int, int, bytes]] = (),
        flags: int = 0,
        address: Any = None,
        /,
    ) -> int:
        try:
            level = find_handshake_level(list(ancdata))
        except ValueError as e:
            raise _oserror(errno.EINVAL, f"QUIC_HANDSHAKE_INFO: {e}") from None
        if level is None:
            raise _oserror(errno.EINVAL, "no QUIC_HANDSHAKE_INFO cmsg")
        data = b"".join(bytes(b) for b in buffers)
        if not data:
            raise _oserror(errno.EMSGSIZE, "empty handshake message")
        self.pump()
        self._check()
        if self.eof:
            raise _oserror(errno.EPIPE, "the client's QUIC connection is closed")
        more = bool(flags & socket.MSG_MORE)
        chunks = [data[i : i + codec.MAX_CHUNK] for i in range(0, len(data), codec.MAX_CHUNK)]
        for i, chunk in enumerate(chunks):
            last = i == len(chunks) - 1
            self._send(codec.Crypto(level, chunk, more=more or not last, outgoing=True))
        return len(data)

    def recvmsg(
        self, bufsize: int, ancbufsize: int = 0, flags: int = 0, /
    ) -> tuple[bytes, Ancillary, int, Any]:
        if self.closed:
            raise _oserror(errno.EBADF, "socket is closed")
        self.pump()
        if self.protocol_error is not None or not self.eof:
            # after CLOSED, the client's stack errors are consequences of the close: what
            # it received before is delivered, then EOF
            self._check()
        if not self._inbox:
            if self.eof or self.gone:
                return b"", [], 0, None
            raise BlockingIOError(errno.EAGAIN, "no handshake data from the client")
        level, chunk = self._inbox[0]
        data, rest = chunk[:bufsize], chunk[bufsize:]
        if rest:
            self._inbox[0] = (level, rest)
        else:
            self._inbox.popleft()
        self._inbox_bytes -= len(data)
        anc = [(uapi.SOL_QUIC, uapi.QUIC_HANDSHAKE_INFO, uapi.pack_handshake_info(level))]
        if ancbufsize < socket.CMSG_LEN(1):
            return data, [], socket.MSG_CTRUNC, None
        return data, anc, 0 if rest else socket.MSG_EOR, None

    def close(self) -> None:
        """The unix connection belongs to the server; this only ends the socket's use."""
        self.closed = True
