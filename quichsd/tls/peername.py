# SPDX-License-Identifier: GPL-2.0-or-later
"""The peer identity a client verifies the server certificate against, and its SNI.

The rule (documented in quichsd(8), VERIFYING THE SERVER), applied on every path (netlink,
fd handoff, socket-ops, quichsd-probe):

1. a peer name from the request: an IP literal is matched against the certificate's IP
   address SANs (and sent as no SNI, RFC 6066 §3); a DNS name is converted once to its
   A-label form (IDNA2008), sent as the SNI and matched against the DNS SANs;
2. no peer name but the peer's address is known (the socket's peer): its IP address SANs;
3. neither: the handshake is refused (:class:`~quichsd.errors.InvalidRequest`, EINVAL)
   unless the config allows name-less verification (``client.verify_server_without_name``),
   which checks the chain and key purpose only.

A name is refused, never cut short, when it holds a NUL or any other control character,
is not valid UTF-8 IDNA2008, or is not a host name (letters, digits, ``-``, ``_`` in
labels of 1 to 63 bytes, at most 253 bytes in all, after A-label conversion).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass

from ..errors import GnuTLSError, InvalidRequest
from ..gnutls import _lib as L
from ..logtext import quoted

#: an A-label host name: LDH labels (and ``_``, which some internal names carry)
_HOST = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
MAX_NAME_BYTES = 253


@dataclass(frozen=True, slots=True)
class PeerIdentity:
    """What is verified: exactly one of ``dns`` (A-label, also the SNI) and ``ip``
    (packed, 4 or 16 bytes); neither when name-less verification was allowed."""

    dns: bytes | None = None
    ip: bytes | None = None
    #: for messages: the name or address as given (escaped)
    shown: str = "no name"


def _ip(text: str) -> bytes | None:
    try:
        return ipaddress.ip_address(text).packed
    except ValueError:
        return None


def dns_name(name: str) -> bytes:
    """The A-label form of the host name ``name``; InvalidRequest if it is not one."""
    shown = quoted(name)
    if any(not ch.isprintable() for ch in name):
        raise InvalidRequest(f"peer name {shown} contains control characters")
    try:
        ace = L.idna_to_ascii(name.encode("utf-8"))
    except (GnuTLSError, UnicodeEncodeError) as e:
        raise InvalidRequest(f"peer name {shown} is not a valid IDNA2008 host name: {e}") from None
    if ace.endswith(b".") and len(ace) > 1:
        ace = ace[:-1]  # the absolute form names the same host; SNI carries no final dot
    labels = ace.decode("ascii", "replace").split(".")
    if len(ace) > MAX_NAME_BYTES or not all(_HOST.fullmatch(x) for x in labels):
        raise InvalidRequest(f"peer name {shown} is not a host name")
    return ace


@functools.lru_cache(maxsize=256)
def _named_identity(name: str) -> PeerIdentity:
    """Rule 1, for each distinct name once: a client names the same few servers again and
    again, and the IP parse, IDNA mapping and label checks cost a sixth of a client
    handshake's CPU (issue 15). A refused name raises each time (nothing is cached)."""
    packed = _ip(name)
    if packed is not None:
        return PeerIdentity(ip=packed, shown=quoted(name))
    return PeerIdentity(dns=dns_name(name), shown=quoted(name))


def peer_identity(name: str | None, address: str | None, *, allow_nameless: bool) -> PeerIdentity:
    """The identity to verify for a request naming ``name`` to a peer at ``address``."""
    if name:
        return _named_identity(name)
    packed = _ip(address) if address else None
    if packed is not None:
        return PeerIdentity(ip=packed, shown=f"address {address}")
    if allow_nameless:
        return PeerIdentity()
    raise InvalidRequest(
        "no peer name and no peer address to verify the server certificate against "
        "(client.verify_server_without_name: true allows chain-only verification)"
    )
