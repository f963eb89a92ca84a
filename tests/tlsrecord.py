# SPDX-License-Identifier: GPL-2.0-or-later
"""A userspace TLS 1.3 record layer keyed by kTLS ``crypto_info`` bytes (tests only).

This host's kernel has no kTLS, so the host-side tests check what quichsd *would*
install by doing the kernel's job with the same bytes: :func:`parse` reads a
``struct tls12_crypto_info_*`` the way ``net/tls`` does (written from ``linux/tls.h``,
independently of ``quichsd.ktls``), and :class:`RecordLayer` seals and opens
application-data records with it (``cryptography``'s AEADs). If a key, the salt/IV split
or a sequence number were wrong, the real peer (gnutls-serv/-cli) would fail to decrypt,
or we would.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305

# cipher_type -> (iv, key, salt) sizes, linux/tls.h
_SIZES = {51: (8, 16, 4), 52: (8, 32, 4), 53: (8, 16, 4), 54: (12, 32, 0)}


@dataclass
class CryptoInfo:
    version: int
    cipher: int
    key: bytes
    nonce_base: bytes  # salt || iv, 12 bytes
    seq: int


def parse(raw: bytes) -> CryptoInfo:
    version, cipher = struct.unpack_from("=HH", raw)
    ivl, keyl, saltl = _SIZES[cipher]
    assert len(raw) == 4 + ivl + keyl + saltl + 8, f"{len(raw)} bytes for cipher {cipher}"
    off = 4
    iv = raw[off : off + ivl]
    off += ivl
    key = raw[off : off + keyl]
    off += keyl
    salt = raw[off : off + saltl]
    off += saltl
    seq = int.from_bytes(raw[off : off + 8], "big")
    return CryptoInfo(version, cipher, key, salt + iv, seq)


class RecordLayer:
    """One direction of TLS 1.3 record protection."""

    def __init__(self, info: CryptoInfo) -> None:
        self.info = info
        self.seq = info.seq
        c = info.cipher
        self.aead = (
            AESGCM(info.key)
            if c in (51, 52)
            else AESCCM(info.key)
            if c == 53
            else ChaCha20Poly1305(info.key)
        )

    def _nonce(self) -> bytes:
        n = bytes(
            x ^ y for x, y in zip(self.info.nonce_base, self.seq.to_bytes(12, "big"), strict=True)
        )
        self.seq += 1
        return n

    def seal(self, data: bytes, content_type: int = 23) -> bytes:
        inner = data + bytes([content_type])
        header = struct.pack("!BHH", 23, 0x0303, len(inner) + 16)
        return header + self.aead.encrypt(self._nonce(), inner, header)

    def open(self, record: bytes) -> tuple[int, bytes]:
        header, body = record[:5], record[5:]
        inner = self.aead.decrypt(self._nonce(), body, header).rstrip(b"\0")
        return inner[-1], inner[:-1]


def read_record(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """One whole TLS record from a blocking socket."""
    sock.settimeout(timeout)
    head = _exact(sock, 5)
    (length,) = struct.unpack("!H", head[3:5])
    return head + _exact(sock, length)


def _exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"peer closed after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


class Recorder:
    """Stands in for ``quichsd.ktls.install``: keeps what would have been installed."""

    def __init__(self) -> None:
        self.calls: list[tuple[bytes, bytes, int]] = []

    def __call__(self, sock: socket.socket, tx: object, rx: object, max_send: int) -> None:
        from quichsd import ktls

        assert isinstance(tx, ktls.TrafficState) and isinstance(rx, ktls.TrafficState)
        self.calls.append((ktls.pack_crypto_info(tx), ktls.pack_crypto_info(rx), max_send))

    def layers(self) -> tuple[RecordLayer, RecordLayer]:
        tx, rx, _ = self.calls[-1]
        return RecordLayer(parse(tx)), RecordLayer(parse(rx))
