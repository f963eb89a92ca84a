# SPDX-License-Identifier: GPL-2.0-or-later
"""quichsd: TLS 1.3 handshake agent for kernel TCP consumers (kTLS) and QUIC sockets.

The public Python API (docs/api.md) is importable from here, e.g.
``from quichsd import client_handshake, Handshake``; it is loaded on first use, so
``import quichsd`` alone (the daemon, ``--version``) loads neither GnuTLS nor asyncio.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

#: the public API: these names, from quichsd.api
__all__ = [
    "DEFAULT_DAEMON_SOCKET",
    "Handshake",
    "HandshakeFailed",
    "client_handshake",
    "daemon_handshake",
    "hand_off",
    "server_handshake",
]

if TYPE_CHECKING:
    from .api import (
        DEFAULT_DAEMON_SOCKET,
        Handshake,
        HandshakeFailed,
        client_handshake,
        daemon_handshake,
        hand_off,
        server_handshake,
    )


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'quichsd' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
