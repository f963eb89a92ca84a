# SPDX-License-Identifier: GPL-2.0-or-later
"""The netlink transport for the installed pyroute2 (0.9 and later, or Debian 12/13's 0.7)."""

from __future__ import annotations

from .. import uapi
from .pyroute import HAS_ASYNC_API, PyrouteTransport
from .transport import NetlinkTransport


def netlink_transport(
    *,
    family: str = uapi.HANDSHAKE_FAMILY_NAME,
    group: str = uapi.HANDSHAKE_MCGRP_TLSHD,
    join: bool = True,
) -> NetlinkTransport:
    """The transport for the installed pyroute2: its asyncio API where it has one
    (0.9 and later), else the synchronous one of 0.7 (:mod:`quichsd.netlink.pyroute07`)."""
    if HAS_ASYNC_API:
        return PyrouteTransport(family=family, group=group, join=join)
    from .pyroute07 import Pyroute07Transport

    return Pyroute07Transport(family=family, group=group, join=join)
