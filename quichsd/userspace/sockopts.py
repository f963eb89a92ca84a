# SPDX-License-Identifier: GPL-2.0-or-later
"""getsockopt/setsockopt of the userspace QUIC socket, as the kernel answers them.

Values are decoded with :mod:`quichsd.uapi` from the layouts of docs/kernel-interfaces.md §2.6;
errors are ``OSError`` with the kernel's errno (EINVAL, ENOPROTOOPT...).
"""

from __future__ import annotations

import asyncio
import errno
import socket
from abc import ABC, abstractmethod
from collections import deque
from typing import Any

from aioquic.quic.connection import NetworkAddress, QuicConnectionError

from .. import uapi
from . import ccm
from .bridge import BridgedConnection
from .options import SocketOptions


def oserror(code: int, what: str) -> OSError:
    """``OSError(code)`` whose message names the errno and what was wrong."""
    return OSError(code, f"{errno.errorcode.get(code, code)}: {what}")


_err = oserror


class SockOpts(ABC):
    """The option half of the socket (mixed into :class:`UserspaceQuicSocket`)."""

    _loop: asyncio.AbstractEventLoop
    _conn: BridgedConnection
    _opts: SocketOptions
    _rx: deque[tuple[uapi.CryptoLevel, bytes]]
    _nst: bytearray
    _secrets: set[tuple[uapi.CryptoLevel, bool]]
    _local_close: uapi.ConnectionClose | None
    _replay: deque[tuple[bytes, NetworkAddress]]
    _send_ready: asyncio.Event
    _closed: bool
    _eof: bool
    _established: bool
    peer_transport_params: bytes | None
    selected_alpn: bytes | None

    @abstractmethod
    def _nst_complete(self) -> bool:
        """Provided by the concrete socket."""

    @abstractmethod
    def _after_io(self) -> None:
        """Provided by the concrete socket."""

    @abstractmethod
    def close_info(self) -> uapi.ConnectionClose:
        """Provided by the concrete socket."""

    def getsockopt(self, level: int, optname: int, buflen: int = 0, /) -> Any:
        if level == socket.SOL_SOCKET:
            if optname == socket.SO_PROTOCOL:
                return uapi.IPPROTO_QUIC
            raise _err(errno.ENOPROTOOPT, f"SOL_SOCKET option {optname} not supported")
        if level != uapi.SOL_QUIC:
            raise _err(errno.ENOPROTOOPT, f"level {level} is not SOL_QUIC")
        if buflen <= 0:
            raise _err(errno.EINVAL, f"SOL_QUIC option {optname} needs a buffer length")
        o = self._opts
        if optname == uapi.QUIC_SOCKOPT_CONFIG:
            return uapi.pack_config(o.config)[:buflen]
        if optname == uapi.QUIC_SOCKOPT_CONNECTION_CLOSE:
            return uapi.pack_connection_close(self.close_info())[:buflen]
        if optname == uapi.QUIC_SOCKOPT_ALPN:
            value = self.selected_alpn or uapi.format_alpn_option(o.alpns)
        elif optname == uapi.QUIC_SOCKOPT_SESSION_TICKET:
            if not o.is_client:
                value = o.ticket
            elif self._established:
                value = bytes(self._nst) if self._nst_complete() else b""
            else:
                value = o.ticket
        elif optname == uapi.QUIC_SOCKOPT_TRANSPORT_PARAM_EXT:
            value = self._conn.local_transport_parameters
        else:
            raise _err(errno.ENOPROTOOPT, f"SOL_QUIC option {optname} not supported")
        if len(value) > buflen:
            raise _err(errno.EINVAL, f"option {optname} needs {len(value)} bytes, got {buflen}")
        return value

    def setsockopt(self, level: int, optname: int, value: bytes, /) -> None:
        if level != uapi.SOL_QUIC:
            raise _err(errno.ENOPROTOOPT, f"level {level} is not SOL_QUIC")
        value = bytes(value)
        if len(value) > uapi.QUIC_TICKET_MAX_LEN:
            raise _err(errno.EINVAL, f"option value of {len(value)} bytes exceeds 4096")
        if optname == uapi.QUIC_SOCKOPT_CRYPTO_SECRET:
            self._set_secret(value)
        elif optname == uapi.QUIC_SOCKOPT_TRANSPORT_PARAM_EXT:
            self._set_peer_tp(value)
        elif optname == uapi.QUIC_SOCKOPT_ALPN:
            self._set_alpn(value)
        elif optname == uapi.QUIC_SOCKOPT_CONNECTION_CLOSE:
            try:
                self._local_close = uapi.unpack_connection_close(value)
            except ValueError as e:
                raise _err(errno.EINVAL, f"CONNECTION_CLOSE: {e}") from None
        elif optname == uapi.QUIC_SOCKOPT_SESSION_TICKET:
            if not uapi.QUIC_TICKET_MIN_LEN <= len(value) <= uapi.QUIC_TICKET_MAX_LEN:
                raise _err(errno.EINVAL, f"SESSION_TICKET of {len(value)} bytes not in 64..4096")
            self._opts.ticket = value
        elif optname == uapi.QUIC_SOCKOPT_CONFIG:
            if self._established:
                raise _err(errno.EINVAL, "CONFIG cannot change once established")
            self._opts.config = uapi.unpack_config(value)
        else:
            raise _err(errno.ENOPROTOOPT, f"SOL_QUIC option {optname} not supported")

    def _set_secret(self, value: bytes) -> None:
        if self._established or self._closed or self._eof:
            raise _err(errno.EINVAL, "CRYPTO_SECRET only while establishing")
        try:
            s = uapi.unpack_crypto_secret(value)
        except ValueError as e:  # wrong size, INITIAL level, unknown cipher
            raise _err(errno.EINVAL, f"CRYPTO_SECRET: {e}") from None
        if (s.level, s.send) in self._secrets:
            raise _err(errno.EINVAL, f"CRYPTO_SECRET {s.level.name} already installed")
        self._conn.install_secret(s.level, s.send, ccm.CIPHER_TO_SUITE[s.cipher], s.secret)
        self._secrets.add((s.level, s.send))
        if s.level is uapi.CryptoLevel.EARLY and s.send:
            self._send_ready.set()
        if not s.send:  # packets that arrived before this key: process them now
            for data, addr in list(self._replay):
                self._conn.receive_datagram(data, addr, now=self._loop.time())
        app = uapi.CryptoLevel.APP
        if (app, True) in self._secrets and (app, False) in self._secrets:
            self._established = True
            self._send_ready.set()
            self._replay.clear()
            early = (uapi.CryptoLevel.EARLY, bool(self._conn._is_client)) in self._secrets
            self._conn.complete_handshake(early_data_accepted=early, resumed=False)
        self._after_io()

    def _set_peer_tp(self, value: bytes) -> None:
        if len(value) > uapi.QUIC_TP_EXT_MAX_LEN:
            raise _err(errno.EINVAL, f"TRANSPORT_PARAM_EXT of {len(value)} bytes exceeds 512")
        try:
            self._conn.apply_peer_transport_parameters(value)
        except QuicConnectionError as e:
            self._conn.close(e.error_code, e.frame_type, e.reason_phrase)
            self._after_io()
            raise _err(errno.EINVAL, f"peer transport parameters: {e.reason_phrase}") from None
        self.peer_transport_params = value

    def _set_alpn(self, value: bytes) -> None:
        try:
            alpns = uapi.parse_alpn_option(value)
        except ValueError as e:
            raise _err(errno.EINVAL, f"ALPN: {e}") from None
        if len(alpns) == 1 and (not self._opts.is_client or self._rx or self._secrets):
            self.selected_alpn = alpns[0]
            self._conn.set_alpn(alpns[0].decode("ascii", "replace"))
        elif self._secrets:
            raise _err(errno.EINVAL, "ALPN list cannot change once the handshake started")
        else:
            self._opts.alpns = alpns
