# SPDX-License-Identifier: GPL-2.0-or-later
"""Unix service protocol v1: byte layout and every malformed-record rule of the codec."""

from __future__ import annotations

import errno
import struct

import pytest

from quichsd import uapi
from quichsd.unix import codec
from quichsd.unix.codec import Attr, CodecError, MsgType

CONFIG = uapi.pack_config(uapi.QuicConfig())


def rec(mtype: int, *attrs: tuple[int, bytes], version: int = 1, count: int | None = None) -> bytes:
    n = len(attrs) if count is None else count
    body = b"".join(struct.pack(">HH", t, len(v)) + v for t, v in attrs)
    return struct.pack(">BBH", version, mtype, n) + body


def test_error_reply_bytes() -> None:
    got = codec.error_reply(errno.EACCES, "no")
    want = (
        b"\x01\x13\x00\x03"  # version 1, ERROR (19), 3 attributes
        b"\x00\x11\x00\x04\x00\x00\x00\x0d"  # STATUS = 13 (EACCES)
        b"\x00\x17\x00\x01\x01"  # VERSION = 1
        b"\x00\x16\x00\x02no"  # ERROR = "no"
    )
    assert got == want
    assert codec.decode(got) == codec.Error(errno.EACCES, "no", 1)


def test_handshake_request_bytes_and_roundtrip() -> None:
    msg = codec.Request(
        uapi.MsgType.CLIENTHELLO, uapi.AuthMode.PSK, "srv", 1500, psk_serials=(7, 8)
    )
    raw = codec.encode(msg)
    assert raw == rec(
        MsgType.HANDSHAKE,
        (Attr.ROLE, b"\x01"),
        (Attr.AUTH, b"\x02"),
        (Attr.PEER_NAME, b"srv"),
        (Attr.TIMEOUT_MS, struct.pack(">I", 1500)),
        (Attr.PSK_SERIAL, struct.pack(">I", 7)),
        (Attr.PSK_SERIAL, struct.pack(">I", 8)),
    )
    assert codec.decode(raw) == msg


def test_start_and_ops_roundtrip() -> None:
    settings = codec.SocketSettings(CONFIG, b"h3,hq", b"t" * 100, b"\x01\x02")
    msgs: list[codec.Message] = [
        codec.Request(uapi.MsgType.SERVERHELLO, uapi.AuthMode.X509, settings=settings),
        codec.Crypto(uapi.CryptoLevel.HANDSHAKE, b"x" * codec.MAX_CHUNK),
        codec.Crypto(uapi.CryptoLevel.INITIAL, b"ch", more=True, outgoing=True),
        codec.Option(uapi.QUIC_SOCKOPT_SESSION_TICKET, b"nst"),
        codec.Option(uapi.QUIC_SOCKOPT_CRYPTO_SECRET, b"s" * 56, outgoing=True),
        codec.Closed(b"c" * 72),
        codec.Closed(None),
        codec.OpError(errno.EINVAL, "nope"),
        codec.Result(0, b"h3", 51, "X25519", True, True, None, 1234),
        codec.Result(errno.EACCES, error="alert 42"),
    ]
    for m in msgs:
        assert codec.decode(codec.encode(m)) == m


@pytest.mark.parametrize(
    ("record", "status", "words"),
    [
        (b"", errno.EBADMSG, "shorter than the 4-byte header"),
        (b"\x01\x01", errno.EBADMSG, "shorter"),
        (rec(1, (Attr.ROLE, b"\x01"), version=2), errno.EPROTONOSUPPORT, "speaks version 1"),
        (rec(99), errno.EBADMSG, "unknown message type 99"),
        (rec(1, count=33), errno.EBADMSG, "33 attributes exceed the limit of 32"),
        (rec(1, count=1), errno.EBADMSG, "attribute 0 header truncated"),
        (rec(1, (Attr.ROLE, b"\x01"))[:-1] + b"", errno.EBADMSG, "claims 1 bytes, 0 left"),
        (
            rec(1, (Attr.ROLE, b"\x01"), (Attr.AUTH, b"\x03"), (200, b"")),
            errno.EBADMSG,
            "unknown attribute 200",
        ),
        (
            rec(1, (Attr.ROLE, b"\x01"), (Attr.AUTH, b"\x03"), (Attr.DATA, b"x")),
            errno.EBADMSG,
            "DATA not allowed",
        ),
        (rec(1, (Attr.ROLE, b"\x01"), (Attr.ROLE, b"\x01")), errno.EBADMSG, "ROLE repeated"),
        (rec(1, (Attr.ROLE, b"\x01")), errno.EBADMSG, "missing attribute(s) AUTH"),
        (
            rec(1, (Attr.ROLE, b"\x01"), (Attr.AUTH, b"\x03")) + b"zz",
            errno.EBADMSG,
            "2 trailing bytes",
        ),
        (rec(1, (Attr.ROLE, b"\x03"), (Attr.AUTH, b"\x03")), errno.EBADMSG, "ROLE 3"),
        (rec(1, (Attr.ROLE, b"\x01"), (Attr.AUTH, b"\x09")), errno.EBADMSG, "AUTH 9"),
        (
            rec(1, (Attr.ROLE, b"\x00\x01"), (Attr.AUTH, b"\x03")),
            errno.EBADMSG,
            "ROLE has 2 bytes, expected 1",
        ),
        (
            rec(1, (Attr.ROLE, b"\x01"), (Attr.AUTH, b"\x03"), (Attr.PEER_NAME, b"\xff")),
            errno.EBADMSG,
            "PEER_NAME is not UTF-8",
        ),
        (
            rec(2, (Attr.ROLE, b"\x01"), (Attr.AUTH, b"\x03"), (Attr.CONFIG, b"\0" * 27)),
            errno.EBADMSG,
            "CONFIG has 27 bytes, expected 28",
        ),
        (
            rec(
                2,
                (Attr.ROLE, b"\x01"),
                (Attr.AUTH, b"\x03"),
                (Attr.CONFIG, CONFIG),
                (Attr.ALPN, b"h3,,x"),
            ),
            errno.EBADMSG,
            "ALPN",
        ),
        (
            rec(
                2,
                (Attr.ROLE, b"\x01"),
                (Attr.AUTH, b"\x03"),
                (Attr.CONFIG, CONFIG),
                (Attr.TRANSPORT_PARAM_EXT, b"\0" * 513),
            ),
            errno.EBADMSG,
            "513 bytes exceeds 512",
        ),
        (rec(3, (Attr.LEVEL, b"\x03"), (Attr.DATA, b"x")), errno.EBADMSG, "LEVEL 3"),
        (rec(3, (Attr.LEVEL, b"\x01"), (Attr.DATA, b"")), errno.EBADMSG, "empty DATA"),
        (
            rec(4, (Attr.OPTION, struct.pack(">I", 13)), (Attr.VALUE, b"k")),
            errno.EBADMSG,
            "option 13 cannot be updated",
        ),
        (rec(6, (Attr.STATUS, b"\0\0\0\0")), errno.EBADMSG, "STATUS 0 is not a positive"),
        (b"\x01\x01\x00\x00" + b"\0" * 65533, errno.EMSGSIZE, "65537 bytes exceeds 65536"),
    ],
)
def test_malformed(record: bytes, status: int, words: str) -> None:
    with pytest.raises(CodecError) as ei:
        codec.decode(record)
    assert ei.value.status == status
    assert words in str(ei.value)


def test_encode_refuses_oversized_fields() -> None:
    with pytest.raises(ValueError, match="DATA of 32769 bytes exceeds 32768"):
        codec.encode(codec.Crypto(uapi.CryptoLevel.APP, b"x" * (codec.MAX_CHUNK + 1)))


def test_long_text_is_cut_on_a_character_boundary() -> None:
    raw = codec.encode(codec.Error(errno.EIO, "é" * 1000))
    assert codec.decode(raw) == codec.Error(errno.EIO, "é" * 512, 1)
