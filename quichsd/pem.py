# SPDX-License-Identifier: GPL-2.0-or-later
"""Structural checks of PEM/DER certificates, CRLs and private keys. Pure; no crypto.

These catch the usual configuration mistakes (wrong file, truncated file, key in the
certificate slot, encrypted key, more than tlshd's 10 chain certificates) with a message
naming the block and its line, before GnuTLS sees the bytes. They do not parse X.509: a
block passes if it is valid base64 of one complete DER SEQUENCE.

Private keys are checked without copying the secret: the base64 alphabet is matched on a
``memoryview`` and only the first 3 decoded bytes (the ASN.1 header) are looked at.
"""

from __future__ import annotations

import binascii
import re

#: tlshd's TLSHD_MAX_CERTS.
MAX_CHAIN_CERTS = 10
KEY_LABELS = ("PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "DSA PRIVATE KEY")

_BEGIN = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")
_BASE64 = re.compile(rb"[A-Za-z0-9+/=\s]*")

Buffer = bytes | bytearray | memoryview


class PemError(ValueError):
    """The data is not what it should be; the message says what and where."""


def is_der_sequence(der: Buffer) -> bool:
    """True if ``der`` is exactly one DER SEQUENCE (tag 0x30 and a consistent length)."""
    if len(der) < 2 or der[0] != 0x30:
        return False
    first = der[1]
    if first < 0x80:
        return 2 + first == len(der)
    n = first & 0x7F
    if n == 0 or n > 4 or len(der) < 2 + n:
        return False
    length = int.from_bytes(bytes(der[2 : 2 + n]), "big")
    return 2 + n + length == len(der)


def _blocks(data: bytes | bytearray) -> list[tuple[str, int, int, int]]:
    """Every PEM block: (label, body start, body end, line of the BEGIN marker)."""
    out: list[tuple[str, int, int, int]] = []
    pos = 0
    while (m := _BEGIN.search(data, pos)) is not None:
        label = m[1].decode("ascii")
        line = data.count(b"\n", 0, m.start()) + 1
        end_marker = b"-----END " + m[1] + b"-----"
        end = data.find(end_marker, m.end())
        if end < 0:
            raise PemError(f"'-----BEGIN {label}-----' at line {line} has no matching END line")
        out.append((label, m.end(), end, line))
        pos = end + len(end_marker)
    return out


def _decode(data: bytes | bytearray, start: int, end: int) -> bytes | None:
    body = b"".join(bytes(data[start:end]).split())
    try:
        return binascii.a2b_base64(body, strict_mode=True)
    except binascii.Error:
        return None


def _check_blocks(data: bytes | bytearray, label: str, noun: str, limit: int | None) -> int:
    count = 0
    for block_label, start, end, line in _blocks(data):
        if block_label != label:
            continue
        count += 1
        der = _decode(data, start, end)
        if der is None:
            raise PemError(f"{noun} {count} (line {line}) is not valid base64")
        if not is_der_sequence(der):
            raise PemError(f"{noun} {count} (line {line}) is not a DER structure (truncated?)")
    if count == 0:
        raise PemError(f"no PEM '{label}' block found")
    if limit is not None and count > limit:
        raise PemError(f"{count} certificates, more than the {limit} allowed")
    return count


def check_certificates(data: bytes | bytearray, *, limit: int | None) -> int:
    """Number of PEM certificates in ``data`` (at least 1, at most ``limit``)."""
    return _check_blocks(data, "CERTIFICATE", "certificate", limit)


def check_crls(data: bytes | bytearray) -> int:
    """Number of PEM CRLs in ``data`` (at least 1)."""
    return _check_blocks(data, "X509 CRL", "CRL", None)


def check_private_key(data: bytearray) -> bool:
    """Check one unencrypted private key, PEM or DER; returns True if it is PEM."""
    view = memoryview(data)
    try:
        if _BEGIN.search(data) is None:
            if not is_der_sequence(view):
                raise PemError("neither a PEM private key nor a DER one")
            return False
        keys = []
        for label, start, end, line in _blocks(data):
            if label == "ENCRYPTED PRIVATE KEY":
                raise PemError(f"encrypted private keys are not supported (line {line})")
            if label in KEY_LABELS:
                keys.append((start, end, line))
        if len(keys) != 1:
            found = "no" if not keys else str(len(keys))
            raise PemError(
                f"{found} PEM private key blocks found; expected exactly one "
                f"({', '.join(KEY_LABELS)})"
            )
        start, end, line = keys[0]
        if _BASE64.fullmatch(view[start:end]) is None:
            raise PemError(
                f"private key (line {line}) is not valid base64 (encrypted keys are not supported)"
            )
        first = bytearray()
        for byte in view[start:end]:
            if len(first) == 4:
                break
            if byte not in b" \t\r\n":
                first.append(byte)
        if len(first) < 4 or binascii.a2b_base64(bytes(first))[:1] != b"\x30":
            raise PemError(f"private key (line {line}) is not a DER structure")
        return True
    finally:
        view.release()
