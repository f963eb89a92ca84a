# SPDX-License-Identifier: GPL-2.0-or-later
"""The real :class:`~quichsd.netlink.transport.NetlinkTransport`, on pyroute2's asyncio API.

Two ``AsyncGenericNetlinkSocket`` s, both in this process (the kernel installs an
accepted fd into the process that sends ACCEPT and resolves DONE's fd there too):

* the *multicast* socket joins ``tlshd`` and is only read (its seq-0 queue);
* the *request* socket sends ACCEPT (``NLM_F_REQUEST`` only: the reply carries the fd, and
  a trailing ACK would pop out later as a stray message) and DONE
  (``NLM_F_REQUEST|NLM_F_ACK``), each answered on its own sequence number.

They are separate because pyroute2 poisons a socket after a receive error such as
ENOBUFS (every later use re-raises it): the multicast socket is then replaced, and
requests in flight on the other socket are unaffected.

Messages are handed over raw: :class:`_RawGenlMsg` decodes only the nlmsghdr, so a
malformed reply still reaches :mod:`quichsd.netlink.codec` (and its fd gets answered and
closed) instead of being dropped by a pyroute2 decode error.
"""

from __future__ import annotations

import asyncio
import errno
import logging

from .lean import import_lean

import_lean()  # before any pyroute2 import: see quichsd.netlink.lean

from pyroute2.netlink.exceptions import NetlinkError  # noqa: E402

from .. import uapi  # noqa: E402
from . import codec  # noqa: E402
from .pyroute_msg import _os_error, _raw, _RawGenlMsg, bind_error, join_group  # noqa: E402
from .transport import HandshakeFamilyUnavailable  # noqa: E402

try:
    from pyroute2.netlink.generic import AsyncGenericNetlinkSocket
except ImportError:  # pyroute2 < 0.9: Debian 12's 0.7.2, Debian 13's 0.7.7 (see pyroute07)
    AsyncGenericNetlinkSocket = None
#: pyroute2 has the asyncio API :class:`PyrouteTransport` needs (0.9 and later)
HAS_ASYNC_API = AsyncGenericNetlinkSocket is not None

log = logging.getLogger("quichsd.netlink")

#: an ACCEPT/DONE the kernel never answers would otherwise stall the agent forever
REQUEST_TIMEOUT = 10.0


class PyrouteTransport:
    """``NetlinkTransport`` over two pyroute2 asyncio generic netlink sockets."""

    def __init__(
        self,
        request_timeout: float = REQUEST_TIMEOUT,
        *,
        family: str = uapi.HANDSHAKE_FAMILY_NAME,
        group: str = uapi.HANDSHAKE_MCGRP_TLSHD,
        join: bool = True,
    ) -> None:
        """``family``/``group`` exist so tests can drive this class against a generic
        netlink family every kernel has (``nlctrl``/``notify``). ``join=False`` opens only
        the request socket (a worker process that sends DONE but never reads READY)."""
        self._join = join
        self._request_timeout = request_timeout
        self._family = family
        self._group = group
        self._family_id: int | None = None
        self._mcast: AsyncGenericNetlinkSocket | None = None
        self._req: AsyncGenericNetlinkSocket | None = None

    @property
    def family_id(self) -> int:
        if self._family_id is None:
            raise RuntimeError("PyrouteTransport.open() has not succeeded yet")
        return self._family_id

    async def _bind(self, join: bool) -> AsyncGenericNetlinkSocket:
        sock = AsyncGenericNetlinkSocket()
        sock.module_err_level = "debug"  # we report the absence ourselves, once
        try:
            try:
                await sock.bind(self._family, _RawGenlMsg)
            except NetlinkError as exc:
                raise bind_error(exc, self._family) from exc
            if join:
                join_group(sock, self._group)
        except BaseException:
            _close_quietly(sock)
            raise
        self._family_id = int(sock.prid)
        return sock

    async def open(self) -> None:
        if self._mcast is None and self._join:
            self._mcast = await self._bind(join=True)  # join first: READY needs a listener
        if self._req is None:
            self._req = await self._bind(join=False)

    async def recv(self) -> list[bytes]:
        if not self._join:
            raise OSError(errno.EINVAL, "PyrouteTransport(join=False) reads no multicast")
        if self._mcast is None:
            self._mcast = await self._bind(join=True)
        sock = self._mcast
        try:
            return [_raw(msg) async for msg in sock.get()]
        except (OSError, NetlinkError) as exc:
            # pyroute2 keeps re-raising a receive error on this socket: replace it now,
            # joined again, so nothing submitted from here on goes unnoticed.
            self._mcast = None
            _close_quietly(sock)
            try:
                self._mcast = await self._bind(join=True)
            except (OSError, HandshakeFamilyUnavailable) as reopen:
                log.error("netlink: cannot reopen the multicast socket: %s", reopen)
            raise _os_error(exc) from exc

    async def request(self, body: bytes, flags: int) -> list[bytes]:
        if self._req is None:
            raise OSError(errno.ENOTCONN, "PyrouteTransport.open() has not succeeded yet")
        msg = _RawGenlMsg()
        msg["body"] = body
        try:
            async with asyncio.timeout(self._request_timeout):
                replies = await self._req.nlm_request(msg, msg_type=self.family_id, msg_flags=flags)
                out = [_raw(m) async for m in replies]
        except TimeoutError:
            raise OSError(errno.ETIMEDOUT, "netlink request not answered") from None
        except NetlinkError as exc:
            raise _os_error(exc) from exc
        return [m for m in out if codec.decode_error(m) is None]

    async def close(self) -> None:
        for sock in (self._mcast, self._req):
            if sock is not None:
                _close_quietly(sock)
        self._mcast = self._req = None


def _close_quietly(sock: AsyncGenericNetlinkSocket) -> None:
    try:
        sock.close()
    except Exception as exc:  # closing a poisoned pyroute2 socket may re-raise its error
        log.debug("netlink: closing socket: %s", exc)
