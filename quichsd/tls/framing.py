# SPDX-License-Identifier: GPL-2.0-or-later
"""Handshake-message framing checks on what a peer sends, before GnuTLS buffers it (pure).

GnuTLS waits silently for the body of any header, so a garbage length would stall the
handshake until its deadline instead of failing it; and QUIC forbids some TLS messages
that GnuTLS would otherwise accept (RFC 9001 §6, §8.3).
"""

from __future__ import annotations

from ..errors import PeerRejected
from ..uapi import CryptoLevel
from .alerts import ALERT_DECODE_ERROR, ALERT_UNEXPECTED_MESSAGE

#: cap on handshake bytes accepted from one peer (RFC 9000 §7.5 lets us choose; the
#: largest legitimate flight is a long certificate chain)
MAX_HANDSHAKE_BYTES = 128 * 1024
#: handshake message types QUIC lets a peer send us (RFC 9001 §6 and §8.3 forbid KeyUpdate
#: and EndOfEarlyData): ClientHello, ServerHello, NewSessionTicket, EncryptedExtensions,
#: Certificate, CertificateRequest, CertificateVerify, Finished
ALLOWED_RX_TYPES = frozenset({1, 2, 4, 8, 11, 13, 15, 20})
NEW_SESSION_TICKET = 4


def scan_messages(buf: bytearray, level: CryptoLevel, data: bytes) -> list[int]:
    """Append ``data`` to ``buf`` (the unfinished message at ``level``), drop every message
    it completes and return their types; raise :class:`PeerRejected` on a forbidden type or
    an oversized length (``buf`` then holds the offending header).

    The usual call has ``buf`` empty and ``data`` whole messages: they are scanned in place
    and only an unfinished tail is copied into ``buf``."""
    if buf:
        buf += data
        msg = bytes(buf)
        buf.clear()
    else:
        msg = data
    n, off = len(msg), 0
    done: list[int] = []
    while n - off >= 4:
        htype = msg[off]
        length = msg[off + 1] << 16 | msg[off + 2] << 8 | msg[off + 3]
        if htype not in ALLOWED_RX_TYPES:
            buf += msg[off:]
            raise PeerRejected(
                f"unexpected handshake message type {htype} at the {level.name} level",
                alert=ALERT_UNEXPECTED_MESSAGE,
            )
        if length > MAX_HANDSHAKE_BYTES:
            buf += msg[off:]
            raise PeerRejected(
                f"handshake message type {htype} at the {level.name} level claims "
                f"{length} bytes (limit {MAX_HANDSHAKE_BYTES})",
                alert=ALERT_DECODE_ERROR,
            )
        if n - off < 4 + length:
            break
        done.append(htype)
        off += 4 + length
    if off < n:
        buf += msg[off:]
    return done
