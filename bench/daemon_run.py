# SPDX-License-Identifier: GPL-2.0-or-later
"""``python -m bench.daemon_run CONFIG``: the real daemon (``quichsd -s -c CONFIG``), whose
netlink transport falls back to an idle kernel when this kernel has no ``handshake``
family, so that ``handshake.workers`` > 1 still starts its fork server and workers.

Used by :mod:`bench.daemon_rss` to read idle memory. The transport really opens first
(the real pyroute2 sockets); only where the family is missing does it then behave as a
kernel that never sends a request. It imports nothing the daemon would not, so the
process measured is the daemon's.
"""

from __future__ import annotations

import asyncio
import sys

from quichsd import cli, daemon
from quichsd.netlink import HandshakeFamilyUnavailable, NetlinkTransport
from quichsd.netlink.transports import netlink_transport

#: written to stderr once per process whose transport fell back
IDLE_NOTE = "bench.daemon_run: no handshake family: idle kernel stand-in"


class IdleWhenMissing:
    """The real transport, or an idle kernel where the family is missing."""

    def __init__(self, real: NetlinkTransport) -> None:
        self.real = real
        self.idle = False

    @property
    def family_id(self) -> int:
        return 0 if self.idle else self.real.family_id

    async def open(self) -> None:
        try:
            await self.real.open()
        except HandshakeFamilyUnavailable:
            self.idle = True
            sys.stderr.write(IDLE_NOTE + "\n")

    async def recv(self) -> list[bytes]:
        if self.idle:
            await asyncio.Event().wait()
        return await self.real.recv()

    async def request(self, body: bytes, flags: int) -> list[bytes]:
        if self.idle:
            raise OSError(11, "EAGAIN")  # nothing pending, ever
        return await self.real.request(body, flags)

    async def close(self) -> None:
        await self.real.close()


def _transport(*, join: bool = True) -> NetlinkTransport:
    return IdleWhenMissing(netlink_transport(join=join))


if __name__ == "__main__":
    daemon.netlink_transport = _transport  # type: ignore[assignment]
    sys.exit(cli.main(["-s", "-c", sys.argv[1]]))
