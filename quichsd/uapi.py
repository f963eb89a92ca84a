# SPDX-License-Identifier: GPL-2.0-or-later
"""Constants and struct layouts of ``linux/quic.h`` and ``linux/handshake.h``. Pure: no I/O.

Mirrors lxin/quic ``modules/include/uapi/linux/quic.h`` at 03a9c7cd (uapi last changed
c98ca0f1, 2026-05-22) and the kernel's ``Documentation/netlink/specs/handshake.yaml``
(6.17), as summarised in ``docs/kernel-interfaces.md`` §1-§2. Offsets are
x86-64 (natural alignment; every layout here is the same on all 64-bit Linux ABIs).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

# --- socket level ------------------------------------------------------------------
IPPROTO_QUIC = 261
SOL_QUIC = 288

# --- cmsg types (cmsg_level SOL_QUIC) ---------------------------------------------
QUIC_STREAM_INFO = 0
QUIC_HANDSHAKE_INFO = 1

# --- msg flags used on handshake I/O ----------------------------------------------
MSG_QUIC_NOTIFICATION = 0x8000  # == MSG_MORE on recvmsg's msg_flags (events)

# --- socket options (level SOL_QUIC) -----------------------------------------------
QUIC_SOCKOPT_EVENT = 0
QUIC_SOCKOPT_STREAM_OPEN = 1
QUIC_SOCKOPT_STREAM_RESET = 2
QUIC_SOCKOPT_STREAM_STOP_SENDING = 3
QUIC_SOCKOPT_CONNECTION_ID = 4
QUIC_SOCKOPT_CONNECTION_CLOSE = 5
QUIC_SOCKOPT_CONNECTION_MIGRATION = 6
QUIC_SOCKOPT_KEY_UPDATE = 7
QUIC_SOCKOPT_TRANSPORT_PARAM = 8
QUIC_SOCKOPT_CONFIG = 9
QUIC_SOCKOPT_TOKEN = 10
QUIC_SOCKOPT_ALPN = 11
QUIC_SOCKOPT_SESSION_TICKET = 12
QUIC_SOCKOPT_CRYPTO_SECRET = 13
QUIC_SOCKOPT_TRANSPORT_PARAM_EXT = 14

# --- limits -----------------------------------------------------------------------
QUIC_CRYPTO_SECRET_BUFFER_SIZE = 48
QUIC_CLOSE_PHRASE_BUFFER_SIZE = 64
QUIC_ALPN_MAX_LEN = 128
QUIC_TICKET_MIN_LEN = 64
QUIC_TICKET_MAX_LEN = 4096
QUIC_TP_EXT_MAX_LEN = 512
QUIC_TICKET_MASTER_KEY_LEN = 64

# --- transport error codes ----------------------------------------------------------
QUIC_TRANSPORT_ERROR_PROTOCOL_VIOLATION = 0x0A
QUIC_TRANSPORT_ERROR_CRYPTO = 0x0100  # + TLS alert description (RFC 9001 §4.8)

# --- events --------------------------------------------------------------------------
QUIC_EVENT_CONNECTION_CLOSE = 5
QUIC_EVENT_NEW_TOKEN = 8
QUIC_EVENT_NEW_SESSION_TICKET = 9


class CryptoLevel(enum.IntEnum):
    """``enum quic_crypto_level``. NOT GnuTLS's order: translate explicitly."""

    APP = 0
    INITIAL = 1
    HANDSHAKE = 2
    EARLY = 3


class Cipher(enum.IntEnum):
    """kTLS cipher numbers (``linux/tls.h``) used in ``quic_crypto_secret.type``."""

    AES_GCM_128 = 51
    AES_GCM_256 = 52
    AES_CCM_128 = 53
    CHACHA20_POLY1305 = 54


#: secret length per cipher (the TLS 1.3 suite's hash length)
CIPHER_SECRET_LEN = {
    Cipher.AES_GCM_128: 32,
    Cipher.AES_GCM_256: 48,
    Cipher.AES_CCM_128: 32,
    Cipher.CHACHA20_POLY1305: 32,
}

#: TLS 1.3 suite name per cipher
CIPHER_SUITE_NAME = {
    Cipher.AES_GCM_128: "TLS_AES_128_GCM_SHA256",
    Cipher.AES_GCM_256: "TLS_AES_256_GCM_SHA384",
    Cipher.AES_CCM_128: "TLS_AES_128_CCM_SHA256",
    Cipher.CHACHA20_POLY1305: "TLS_CHACHA20_POLY1305_SHA256",
}


class CertRequest(enum.IntEnum):
    """``quic_config.certificate_request`` (== GnuTLS ``GNUTLS_CERT_*``)."""

    IGNORE = 0
    REQUEST = 1
    REQUIRE = 2


# --- struct quic_crypto_secret (56 bytes) -------------------------------------------
#   u8 send @0 (0 = rx, 1 = tx), u8 level @1, u16 reserved @2, u32 type @4, u8 secret[48] @8
_CRYPTO_SECRET = struct.Struct("<BBHI48s")
CRYPTO_SECRET_SIZE = _CRYPTO_SECRET.size  # 56


@dataclass(frozen=True, slots=True)
class CryptoSecret:
    level: CryptoLevel
    send: bool
    cipher: Cipher
    secret: bytes = b""

    def __repr__(self) -> str:  # never show key material
        return (
            f"CryptoSecret(level={self.level.name}, send={self.send}, "
            f"cipher={self.cipher.name}, secret=<{len(self.secret)} bytes>)"
        )


def pack_crypto_secret(s: CryptoSecret) -> bytes:
    return pack_secret(s.send, s.level, s.cipher, s.secret)


def pack_secret(send: bool, level: CryptoLevel, cipher: Cipher, secret: bytes) -> bytes:
    """:func:`pack_crypto_secret` of these fields, without building a CryptoSecret (the
    driver installs every key through it)."""
    if len(secret) > QUIC_CRYPTO_SECRET_BUFFER_SIZE:
        raise ValueError(f"secret of {len(secret)} bytes exceeds 48")
    return _CRYPTO_SECRET.pack(1 if send else 0, int(level), 0, int(cipher), secret)


def unpack_crypto_secret(data: bytes) -> CryptoSecret:
    """Decode a ``quic_crypto_secret``; the secret is trimmed to the cipher's length."""
    if len(data) != CRYPTO_SECRET_SIZE:
        raise ValueError(f"quic_crypto_secret must be {CRYPTO_SECRET_SIZE} bytes, got {len(data)}")
    send, level, _reserved, ctype, secret = _CRYPTO_SECRET.unpack(data)
    if level not in (CryptoLevel.HANDSHAKE, CryptoLevel.EARLY, CryptoLevel.APP):
        raise ValueError(f"quic_crypto_secret level {level} cannot be installed")
    cipher = Cipher(ctype)
    return CryptoSecret(CryptoLevel(level), bool(send), cipher, secret[: CIPHER_SECRET_LEN[cipher]])


# --- struct quic_handshake_info (cmsg payload) ----------------------------------------
def pack_handshake_info(level: CryptoLevel) -> bytes:
    return bytes((int(level),))


def unpack_handshake_info(data: bytes) -> CryptoLevel:
    """Decode the cmsg payload (1 byte; older kernels padded it, only byte 0 counts)."""
    if len(data) < 1:
        raise ValueError("empty QUIC_HANDSHAKE_INFO cmsg")
    return CryptoLevel(data[0])


# --- struct quic_config (28 bytes; older kernels return 24) --------------------------
_CONFIG = struct.Struct("<IIIIBBBBB3sI")
CONFIG_SIZE = _CONFIG.size  # 28


@dataclass(frozen=True, slots=True)
class QuicConfig:
    version: int = 0
    plpmtud_probe_interval: int = 0
    initial_smoothed_rtt: int = 0
    payload_cipher_type: int = 0
    congestion_control_algo: int = 0
    validate_peer_address: int = 0
    stream_data_nodelay: int = 0
    receive_session_ticket: int = 0  # seconds the client agent waits for a ticket
    certificate_request: int = 0  # CertRequest
    keepalive_probe_interval: int = 0


def pack_config(c: QuicConfig) -> bytes:
    return _CONFIG.pack(
        c.version,
        c.plpmtud_probe_interval,
        c.initial_smoothed_rtt,
        c.payload_cipher_type,
        c.congestion_control_algo,
        c.validate_peer_address,
        c.stream_data_nodelay,
        c.receive_session_ticket,
        c.certificate_request,
        b"\0\0\0",
        c.keepalive_probe_interval,
    )


def unpack_config(data: bytes) -> QuicConfig:
    """Decode ``quic_config``; a short buffer (older kernel) is zero-extended."""
    if len(data) > CONFIG_SIZE:
        data = data[:CONFIG_SIZE]
    v = _CONFIG.unpack(data.ljust(CONFIG_SIZE, b"\0"))
    return QuicConfig(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[10])


# --- struct quic_connection_close (72 bytes) -------------------------------------------
#   u32 errcode @0, u8 frame @4, u8 reserved[3] @5, u8 phrase[64] @8
_CONN_CLOSE = struct.Struct("<IB3s64s")
CONNECTION_CLOSE_SIZE = _CONN_CLOSE.size  # 72


@dataclass(frozen=True, slots=True)
class ConnectionClose:
    errcode: int
    frame: int = 0
    phrase: bytes = b""


def pack_connection_close(c: ConnectionClose) -> bytes:
    phrase = c.phrase[: QUIC_CLOSE_PHRASE_BUFFER_SIZE - 1]  # keep a NUL terminator
    return _CONN_CLOSE.pack(c.errcode, c.frame, b"\0\0\0", phrase)


def unpack_connection_close(data: bytes) -> ConnectionClose:
    if len(data) < 8:
        raise ValueError(f"quic_connection_close needs at least 8 bytes, got {len(data)}")
    errcode, frame, _r, phrase = _CONN_CLOSE.unpack(data[:CONNECTION_CLOSE_SIZE].ljust(72, b"\0"))
    return ConnectionClose(errcode, frame, phrase.split(b"\0", 1)[0])


# --- ALPN option (comma separated) --------------------------------------------------
def parse_alpn_option(raw: bytes) -> tuple[bytes, ...]:
    """Split ``QUIC_SOCKOPT_ALPN`` (e.g. ``b"smbd, h3,ksmbd"``); empty -> ``()``.

    Raises ValueError on an over-long value or an empty entry.
    """
    raw = raw.split(b"\0", 1)[0]
    if not raw:
        return ()
    if len(raw) > QUIC_ALPN_MAX_LEN:
        raise ValueError(f"ALPN option of {len(raw)} bytes exceeds {QUIC_ALPN_MAX_LEN}")
    out = tuple(p.strip(b" ") for p in raw.split(b","))
    if any(not p for p in out):
        raise ValueError(f"ALPN option {raw!r} has an empty entry")
    if any(len(p) > 255 for p in out):
        raise ValueError("ALPN entry longer than 255 bytes")
    return out


def format_alpn_option(alpns: tuple[bytes, ...] | list[bytes]) -> bytes:
    return b",".join(alpns)


# --- netlink family "handshake" (linux/handshake.h) ------------------------------------
HANDSHAKE_FAMILY_NAME = "handshake"
HANDSHAKE_FAMILY_VERSION = 1
HANDSHAKE_MCGRP_TLSHD = "tlshd"

HANDSHAKE_CMD_READY = 1
HANDSHAKE_CMD_ACCEPT = 2
HANDSHAKE_CMD_DONE = 3

HANDSHAKE_HANDLER_CLASS_NONE = 0
HANDSHAKE_HANDLER_CLASS_TLSHD = 1


class MsgType(enum.IntEnum):
    UNSPEC = 0
    CLIENTHELLO = 1
    SERVERHELLO = 2


class AuthMode(enum.IntEnum):
    UNSPEC = 0
    UNAUTH = 1
    PSK = 2
    X509 = 3


# accept attribute ids
HANDSHAKE_A_ACCEPT_SOCKFD = 1
HANDSHAKE_A_ACCEPT_HANDLER_CLASS = 2
HANDSHAKE_A_ACCEPT_MESSAGE_TYPE = 3
HANDSHAKE_A_ACCEPT_TIMEOUT = 4
HANDSHAKE_A_ACCEPT_AUTH_MODE = 5
HANDSHAKE_A_ACCEPT_PEER_IDENTITY = 6
HANDSHAKE_A_ACCEPT_CERTIFICATE = 7
HANDSHAKE_A_ACCEPT_PEERNAME = 8
HANDSHAKE_A_ACCEPT_KEYRING = 9
# nested x509
HANDSHAKE_A_X509_CERT = 1
HANDSHAKE_A_X509_PRIVKEY = 2
# done attribute ids
HANDSHAKE_A_DONE_STATUS = 1
HANDSHAKE_A_DONE_SOCKFD = 2
HANDSHAKE_A_DONE_REMOTE_AUTH = 3

MAX_ERRNO = 4095
