# SPDX-License-Identifier: GPL-2.0-or-later
"""Kernel TLS (kTLS) for a TCP socket whose TLS 1.3 handshake userspace finished.

The kernel takes the record layer over with ``setsockopt(SOL_TCP, TCP_ULP, "tls")`` and
then one ``setsockopt(SOL_TLS, TLS_TX | TLS_RX, struct tls12_crypto_info_*)`` per
direction (``linux/tls.h``). :func:`pack_crypto_info` builds those structs (pure, tested
byte for byte); :func:`install` makes the calls, in that order, and says which one failed.

Layouts (``__u16 version, __u16 cipher_type`` then, packed, no padding)::

    AES-128-GCM (51)        iv[8]  key[16] salt[4] rec_seq[8]    40 bytes
    AES-256-GCM (52)        iv[8]  key[32] salt[4] rec_seq[8]    56 bytes
    AES-128-CCM (53)        iv[8]  key[16] salt[4] rec_seq[8]    40 bytes
    CHACHA20-POLY1305 (54)  iv[12] key[32]         rec_seq[8]    56 bytes

TLS 1.3's 12-byte write IV goes in as ``salt = iv[0:4]`` and ``iv = iv[4:12]`` for the
AES suites, whole for ChaCha20. ``rec_seq`` is the record sequence number, big-endian.
The cipher numbers are the kernel's ``TLS_CIPHER_*``, the same as ``QUIC``'s
(:class:`quichsd.uapi.Cipher`).
"""

from __future__ import annotations

import errno
import socket
import struct
from dataclasses import dataclass, field

from .uapi import Cipher

SOL_TLS = 282
TCP_ULP = 31
TLS_TX = 1
TLS_RX = 2
#: Linux 6.17+: largest plaintext per record the kernel sends (RFC 8449 record_size_limit)
TLS_TX_MAX_PAYLOAD_LEN = 5
TLS_1_3_VERSION = 0x0304
#: the plaintext a TLS 1.3 record carries at most (RFC 8446 §5.1)
MAX_PLAINTEXT = 16384


@dataclass(frozen=True)
class _Layout:
    key: int
    salt: int
    iv: int  # the part of the 12-byte nonce base after the salt


_LAYOUT = {
    Cipher.AES_GCM_128: _Layout(16, 4, 8),
    Cipher.AES_GCM_256: _Layout(32, 4, 8),
    Cipher.AES_CCM_128: _Layout(16, 4, 8),
    Cipher.CHACHA20_POLY1305: _Layout(32, 0, 12),
}


@dataclass(frozen=True)
class TrafficState:
    """One direction's record protection after the handshake (from GnuTLS)."""

    cipher: Cipher
    key: bytes = field(repr=False)
    iv: bytes = field(repr=False)  # the 12-byte TLS 1.3 write IV
    seq: int = 0


def pack_crypto_info(state: TrafficState) -> bytes:
    """``struct tls12_crypto_info_<cipher>`` for ``state`` (TLS 1.3)."""
    lay = _LAYOUT.get(state.cipher)
    if lay is None:
        raise ValueError(f"cipher {int(state.cipher)} has no kTLS layout")
    if len(state.key) != lay.key:
        raise ValueError(f"{state.cipher.name} key is {len(state.key)} bytes, not {lay.key}")
    if len(state.iv) != lay.salt + lay.iv:
        raise ValueError(f"{state.cipher.name} IV is {len(state.iv)} bytes, not 12")
    if not 0 <= state.seq < 1 << 64:
        raise ValueError(f"record sequence number {state.seq} out of range")
    salt, iv = state.iv[: lay.salt], state.iv[lay.salt :]
    head = struct.pack("=HH", TLS_1_3_VERSION, int(state.cipher))
    return head + iv + state.key + salt + state.seq.to_bytes(8, "big")


class KtlsError(Exception):
    """kTLS could not be set up; ``step`` names the call that failed."""

    def __init__(self, step: str, err: int, detail: str) -> None:
        super().__init__(f"{step}: {detail}")
        self.step = step
        self.errno = err


def _why(e: OSError, step: str) -> str:
    if step == "TCP_ULP tls" and e.errno == errno.ENOENT:
        return "the kernel has no TLS ULP (CONFIG_TLS, module tls)"
    if step.startswith("TLS_TX_MAX") and e.errno in (errno.ENOPROTOOPT, errno.EINVAL):
        return f"this kernel cannot limit kTLS records ({e.strerror}; Linux 6.17+ can)"
    if e.errno in (errno.EINVAL, errno.ENOENT, errno.ENOPROTOOPT):
        return f"the kernel refused it ({e.strerror}): cipher not supported by its kTLS?"
    return e.strerror or str(e)


def install(sock: socket.socket, tx: TrafficState, rx: TrafficState, max_send: int = 0) -> None:
    """Hand ``sock``'s record layer to the kernel: ULP, the send limit, TX, then RX.

    ``max_send``: the largest plaintext the peer accepts per record (its RFC 8449
    record_size_limit) when below 16384; it goes in as TLS_TX_MAX_PAYLOAD_LEN, and a
    kernel without that option (before 6.17) cannot honour it, which fails here, before
    any key is installed. Raises :class:`KtlsError`; both structs are packed before any
    call, so a bad state never leaves the socket half configured.
    """
    txi, rxi = pack_crypto_info(tx), pack_crypto_info(rx)
    steps = [("TCP_ULP tls", socket.IPPROTO_TCP, TCP_ULP, b"tls")]
    if 0 < max_send < MAX_PLAINTEXT:
        steps.append(
            (
                f"TLS_TX_MAX_PAYLOAD_LEN {max_send} (the peer's record_size_limit)",
                SOL_TLS,
                TLS_TX_MAX_PAYLOAD_LEN,
                struct.pack("=H", max_send),
            )
        )
    steps.append((f"TLS_TX {tx.cipher.name}", SOL_TLS, TLS_TX, txi))
    steps.append((f"TLS_RX {rx.cipher.name}", SOL_TLS, TLS_RX, rxi))
    for step, level, opt, value in steps:
        try:
            sock.setsockopt(level, opt, value)
        except OSError as e:
            raise KtlsError(step, e.errno or errno.EIO, _why(e, step)) from None
