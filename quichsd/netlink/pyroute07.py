# SPDX-License-Identifier: GPL-2.0-or-later
""":class:`~quichsd.netlink.transport.NetlinkTransport` on pyroute2 0.7's synchronous API.

Debian ships pyroute2 0.7 (0.7.2 in Debian 12, 0.7.7 in Debian 13), which has no asyncio
API; :func:`quichsd.netlink.transports.netlink_transport` picks this class there. Two
``GenericNetlinkSocket`` s, as in the asyncio transport and for the same reasons:

* the *multicast* socket joins ``tlshd``; the event loop watches its fd
  (``loop.add_reader``) and reads it only when a datagram is waiting, so ``get()`` never
  blocks the loop;
* the *request* socket sends ACCEPT and DONE. The kernel answers a generic netlink
  request inside the ``sendmsg`` that carries it (the ``handshake`` family's ``doit``
  handlers run synchronously), so the reply is queued before ``nlm_request`` reads it and
  the call returns without waiting; requests are serialised by a lock, and the socket is
  non-blocking, so a request the kernel did not answer fails with EAGAIN instead of
  stalling the loop.

The raw message class and error mapping are shared with the asyncio transport.
"""

from __future__ import annotations

import asyncio
import errno
import logging
from typing import Any

from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.generic import GenericNetlinkSocket

from .. import uapi
from . import codec
from .pyroute_msg import _os_error, _raw, _RawGenlMsg, bind_error, join_group
from .transport import HandshakeFamilyUnavailable

log = logging.getLogger("quichsd.netlink")


class Pyroute07Transport:
    """``NetlinkTransport`` over two pyroute2 0.7 generic netlink sockets."""

    def __init__(
        self,
        request_timeout: float = 10.0,
        *,
        family: str = uapi.HANDSHAKE_FAMILY_NAME,
        group: str = uapi.HANDSHAKE_MCGRP_TLSHD,
        join: bool = True,
    ) -> None:
        """As :class:`~quichsd.netlink.pyroute.PyrouteTransport` (``request_timeout`` is
        kept for the same signature: replies here are synchronous)."""
        self._join = join
        self._family = family
        self._group = group
        self._family_id: int | None = None
        self._mcast: Any = None
        self._req: Any = None
        self._lock = asyncio.Lock()

    @property
    def family_id(self) -> int:
        if self._family_id is None:
            raise RuntimeError("Pyroute07Transport.open() has not succeeded yet")
        return self._family_id

    def _bind(self, join: bool) -> Any:
        sock = GenericNetlinkSocket()
        sock.module_err_level = "debug"  # we report the absence ourselves, once
        try:
            try:
                sock.bind(self._family, _RawGenlMsg)
            except NetlinkError as exc:
                raise bind_error(exc, self._family) from exc
            if join:
                join_group(sock, self._group)
            sock.setblocking(False)
        except BaseException:
            _close_quietly(sock)
            raise
        self._family_id = int(sock.prid)
        return sock

    async def open(self) -> None:
        if self._mcast is None and self._join:
            self._mcast = self._bind(join=True)
        if self._req is None:
            self._req = self._bind(join=False)

    async def recv(self) -> list[bytes]:
        if not self._join:
            raise OSError(errno.EINVAL, "Pyroute07Transport(join=False) reads no multicast")
        if self._mcast is None:
            self._mcast = self._bind(join=True)
        sock = self._mcast
        while True:
            await _readable(sock.fileno())
            try:
                msgs = list(sock.get())
            except BlockingIOError:
                continue  # woken without a datagram (another reader took it)
            except (OSError, NetlinkError) as exc:
                # replace the socket, joined again, as the asyncio transport does
                self._mcast = None
                _close_quietly(sock)
                try:
                    self._mcast = self._bind(join=True)
                except (OSError, HandshakeFamilyUnavailable) as reopen:
                    log.error("netlink: cannot reopen the multicast socket: %s", reopen)
                raise _os_error(exc) from exc
            if msgs:
                return [_raw(m) for m in msgs]

    async def request(self, body: bytes, flags: int) -> list[bytes]:
        if self._req is None:
            raise OSError(errno.ENOTCONN, "Pyroute07Transport.open() has not succeeded yet")
        msg = _RawGenlMsg()
        msg["body"] = body
        async with self._lock:
            try:
                out = [
                    _raw(m)
                    for m in self._req.nlm_request(msg, msg_type=self.family_id, msg_flags=flags)
                ]
            except BlockingIOError:
                raise OSError(errno.ETIMEDOUT, "netlink request not answered") from None
            except NetlinkError as exc:
                raise _os_error(exc) from exc
        return [m for m in out if codec.decode_error(m) is None]

    async def close(self) -> None:
        for sock in (self._mcast, self._req):
            if sock is not None:
                _close_quietly(sock)
        self._mcast = self._req = None


async def _readable(fd: int) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        loop.remove_reader(fd)


def _close_quietly(sock: Any) -> None:
    try:
        sock.close()
    except Exception as exc:
        log.debug("netlink: closing socket: %s", exc)
