# SPDX-License-Identifier: GPL-2.0-or-later
"""What the TCP path reads itself from raw ClientHello / EncryptedExtensions (pure).

The TCP path picks the PSK binder hash from the key the identity names (a 48-byte NVMe
``NVMe1R02`` key is a SHA-384 PSK), and GnuTLS reads the binder hash from the credentials
*before* it asks for the key; so the server reads the offered identities first, in a
pre-ClientHello hook, with :func:`psk_identities` (RFC 8446 §4.1.2, §4.2.11).

A server refuses a ClientHello that offers no TLS 1.3 with protocol_version
(RFC 8446 §4.2.1) itself, from :func:`offers_tls13`: GnuTLS, offered only TLS 1.2 cipher
suites it does not enable, would call it handshake_failure.

The peer's RFC 8449 record_size_limit (ClientHello for a server, EncryptedExtensions for
a client) is passed to kTLS; GnuTLS 3.7 has no getter for the limit it sends with, so
:func:`record_size_limit` reads it from the same messages.
"""

from __future__ import annotations

import struct

EXT_PRE_SHARED_KEY = 41
EXT_RECORD_SIZE_LIMIT = 28
EXT_SUPPORTED_VERSIONS = 43
TLS13 = 0x0304
_TLS13_BYTES = TLS13.to_bytes(2, "big")
_EXT_HEAD = struct.Struct("!HH")  # extension_type, extension_data length


class HelloError(ValueError):
    """The ClientHello is truncated or malformed (GnuTLS will refuse it itself)."""


def _take(buf: bytes, off: int, n: int) -> tuple[bytes, int]:
    if off + n > len(buf):
        raise HelloError(f"ClientHello truncated at byte {off} (needs {n} more)")
    return buf[off : off + n], off + n


def _vector(buf: bytes, off: int, size: int) -> tuple[bytes, int]:
    raw, off = _take(buf, off, size)
    return _take(buf, off, int.from_bytes(raw, "big"))


def extensions(body: bytes) -> dict[int, bytes]:
    """Extension type -> data of a ClientHello body (handshake header stripped)."""
    off = 2 + 32  # legacy_version, random
    _, off = _vector(body, off, 1)  # legacy_session_id
    _, off = _vector(body, off, 2)  # cipher_suites
    _, off = _vector(body, off, 1)  # legacy_compression_methods
    return encrypted_extensions(body[off:])


def psk_identities(body: bytes) -> list[bytes]:
    """The identities of the ClientHello's pre_shared_key extension ([] if none)."""
    data = extensions(body).get(EXT_PRE_SHARED_KEY)
    if data is None:
        return []
    ids, _ = _vector(data, 0, 2)
    out: list[bytes] = []
    pos = 0
    while pos < len(ids):
        ident, pos = _vector(ids, pos, 2)
        _, pos = _take(ids, pos, 4)  # obfuscated_ticket_age
        out.append(ident)
    return out


def encrypted_extensions(body: bytes) -> dict[int, bytes]:
    """Extension type -> data of an EncryptedExtensions body."""
    exts, _ = _vector(body, 0, 2)
    out: dict[int, bytes] = {}
    pos = 0
    while pos < len(exts):
        head, pos = _take(exts, pos, 4)
        etype, length = struct.unpack("!HH", head)
        out[etype], pos = _take(exts, pos, length)
    return out


def record_size_limit(exts: dict[int, bytes]) -> int | None:
    """The record_size_limit value (RFC 8449 §4: 64..2^14+1 in TLS 1.3), or None."""
    data = exts.get(EXT_RECORD_SIZE_LIMIT)
    if data is None:
        return None
    if len(data) != 2:
        raise HelloError(f"record_size_limit of {len(data)} bytes, not 2")
    limit = int.from_bytes(data, "big")
    if limit < 64:
        raise HelloError(f"record_size_limit {limit} is below 64")
    return limit


def _client_hello_extension(body: bytes, wanted: int) -> bytes | None:
    """``extensions(body).get(wanted)`` without building the dict: the same checks (a
    truncated field anywhere raises HelloError; of repeated types the last one counts),
    by index. Every server handshake runs it (the pre-ClientHello hook), where the
    general parser cost about a tenth of the server's CPU (issue 15)."""
    n = len(body)
    off = 34  # legacy_version, random
    for size in (1, 2, 1):  # legacy_session_id, cipher_suites, legacy_compression_methods
        if off + size > n:
            raise HelloError(f"ClientHello truncated at byte {off} (needs {size} more)")
        length = body[off] if size == 1 else body[off] << 8 | body[off + 1]
        off += size
        if off + length > n:
            raise HelloError(f"ClientHello truncated at byte {off} (needs {length} more)")
        off += length
    if off + 2 > n:
        raise HelloError(f"ClientHello truncated at byte {off} (needs 2 more)")
    end = off + 2 + (body[off] << 8 | body[off + 1])
    off += 2
    if end > n:
        raise HelloError(f"ClientHello truncated at byte {off} (needs {end - off} more)")
    found = None
    while off < end:
        if off + 4 > end:
            raise HelloError(f"ClientHello truncated at byte {off} (needs 4 more)")
        etype, length = _EXT_HEAD.unpack_from(body, off)
        off += 4
        if off + length > end:
            raise HelloError(f"ClientHello truncated at byte {off} (needs {length} more)")
        if etype == wanted:
            found = body[off : off + length]
        off += length
    return found


def offers_tls13(body: bytes) -> bool:
    """A ClientHello body offers TLS 1.3: its supported_versions extension lists 0x0304
    (RFC 8446 §4.2.1; without the extension a client offers TLS 1.2 or older)."""
    data = _client_hello_extension(body, EXT_SUPPORTED_VERSIONS)
    if data is None:
        return False
    versions, _ = _vector(data, 0, 1)
    i = versions.find(_TLS13_BYTES)
    while i >= 0:  # a match at an odd offset straddles two entries
        if i % 2 == 0:
            return True
        i = versions.find(_TLS13_BYTES, i + 1)
    return False


def no_tls13_reason(body: bytes) -> str | None:
    """Why a server must refuse this ClientHello with protocol_version, or None (also for
    a malformed one: GnuTLS refuses that itself, with the right alert)."""
    try:
        if offers_tls13(body):
            return None
    except HelloError:
        return None
    return "unsupported version: the peer's ClientHello offers no TLS 1.3 (supported_versions)"
