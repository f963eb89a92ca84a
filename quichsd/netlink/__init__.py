# SPDX-License-Identifier: GPL-2.0-or-later
"""The kernel's generic netlink ``handshake`` family: wire codec, transport seam, agent."""

from .agent import DEFAULT_MAX_IN_FLIGHT, Handler, HandshakeAgent, HandshakeOutcome
from .codec import AcceptRequest, MalformedMessage
from .transport import HandshakeFamilyUnavailable, NetlinkTransport

__all__ = [
    "DEFAULT_MAX_IN_FLIGHT",
    "AcceptRequest",
    "Handler",
    "HandshakeAgent",
    "HandshakeFamilyUnavailable",
    "HandshakeOutcome",
    "MalformedMessage",
    "NetlinkTransport",
]
