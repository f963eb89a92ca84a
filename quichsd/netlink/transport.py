# SPDX-License-Identifier: GPL-2.0-or-later
"""The seam between the handshake agent and the kernel: one netlink conversation.

:class:`NetlinkTransport` is all the agent needs from a netlink socket. The real one is
:class:`quichsd.netlink.pyroute.PyrouteTransport` (pyroute2's asyncio API); tests replace
only this object with a fake that speaks the same bytes. Messages cross this seam as raw
``nlmsghdr``-framed bytes (received) or genl bodies (sent), decoded and encoded by
:mod:`quichsd.netlink.codec`, so the fake and the kernel are indistinguishable.
"""

from __future__ import annotations

from typing import Protocol

from .. import uapi
from ..errors import QuichsdError


class HandshakeFamilyUnavailable(QuichsdError):
    """The running kernel has no generic netlink family ``handshake`` (or no group)."""

    def __init__(self, detail: str | None = None) -> None:
        msg = (
            f"kernel handshake netlink family {uapi.HANDSHAKE_FAMILY_NAME!r} is not available "
            "(kernel lacks CONFIG_NET_HANDSHAKE?)"
        )
        super().__init__(f"{msg}: {detail}" if detail else msg)
        self.detail = detail


class NetlinkTransport(Protocol):
    """A netlink endpoint bound to the ``handshake`` family in this process."""

    @property
    def family_id(self) -> int:
        """The family's numeric id (the nlmsghdr type of its messages); valid after open()."""
        ...

    async def open(self) -> None:
        """Resolve family ``handshake``, join group ``tlshd``.

        Raises :class:`HandshakeFamilyUnavailable` when the family or group is missing.
        """
        ...

    async def recv(self) -> list[bytes]:
        """Wait for the next batch of multicast messages, each one whole nlmsg.

        Raises ``OSError`` (e.g. ``ENOBUFS`` after an overrun) on a receive error; the
        transport must be usable again by the next call (messages may have been lost).
        """
        ...

    async def request(self, body: bytes, flags: int) -> list[bytes]:
        """Send one request (``body`` = genlmsghdr + attrs) with these nlmsg flags.

        Returns the reply messages (whole nlmsgs, ACKs excluded). A netlink error reply
        raises ``OSError`` with its (positive) errno, e.g. ``EAGAIN`` for an ACCEPT with
        nothing pending.
        """
        ...

    async def close(self) -> None:
        """Release the sockets; idempotent."""
        ...
