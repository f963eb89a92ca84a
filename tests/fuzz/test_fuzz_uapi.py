# SPDX-License-Identifier: GPL-2.0-or-later
"""Property tests of the kernel struct codecs in quichsd/uapi.py.

Every ``unpack_*`` given arbitrary bytes returns a value or raises ValueError; every
``pack_*``/``unpack_*`` pair round-trips; ``parse_alpn_option`` returns a tuple of valid
entries or raises ValueError. Layouts are checked against ``struct`` formats written here
from ``linux/quic.h`` (docs/kernel-interfaces.md §2), not against the module's own structs.
"""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from quichsd import uapi

FUZZ = settings(max_examples=300, deadline=None, database=None)

U8 = st.integers(0, 255)
U32 = st.integers(0, 2**32 - 1)
INSTALLABLE = st.sampled_from(
    [uapi.CryptoLevel.HANDSHAKE, uapi.CryptoLevel.EARLY, uapi.CryptoLevel.APP]
)


@FUZZ
@given(st.binary(max_size=80))
def test_unpack_crypto_secret_arbitrary(data: bytes) -> None:
    try:
        s = uapi.unpack_crypto_secret(data)
    except ValueError:
        return
    assert len(data) == 56
    assert s.level in (uapi.CryptoLevel.HANDSHAKE, uapi.CryptoLevel.EARLY, uapi.CryptoLevel.APP)
    assert len(s.secret) == uapi.CIPHER_SECRET_LEN[s.cipher]
    assert s.secret == data[8 : 8 + len(s.secret)]
    assert s.send is (data[0] != 0)
    assert s.secret.hex() not in repr(s) or not s.secret  # never shows key material


@FUZZ
@given(st.binary(min_size=56, max_size=56), U8, st.integers(0, 2**32 - 1))
def test_unpack_crypto_secret_right_size(data: bytes, level: int, ctype: int) -> None:
    """56 bytes with a random level and cipher: only the known ones decode."""
    raw = data[:1] + bytes([level]) + data[2:4] + struct.pack("<I", ctype) + data[8:]
    try:
        s = uapi.unpack_crypto_secret(raw)
    except ValueError:
        assert level not in (0, 2, 3) or ctype not in (51, 52, 53, 54)
        return
    assert int(s.level) == level and int(s.cipher) == ctype


@FUZZ
@given(INSTALLABLE, st.booleans(), st.sampled_from(list(uapi.Cipher)), st.data())
def test_crypto_secret_round_trip(
    level: uapi.CryptoLevel, send: bool, cipher: uapi.Cipher, data: st.DataObject
) -> None:
    n = uapi.CIPHER_SECRET_LEN[cipher]
    secret = data.draw(st.binary(min_size=n, max_size=n))
    s = uapi.CryptoSecret(level, send, cipher, secret)
    raw = uapi.pack_crypto_secret(s)
    assert raw == struct.pack("<BBHI48s", int(send), int(level), 0, int(cipher), secret)
    assert uapi.unpack_crypto_secret(raw) == s


@FUZZ
@given(st.binary(min_size=49, max_size=100))
def test_pack_crypto_secret_too_long(secret: bytes) -> None:
    s = uapi.CryptoSecret(uapi.CryptoLevel.APP, True, uapi.Cipher.AES_GCM_256, secret)
    try:
        uapi.pack_crypto_secret(s)
    except ValueError as exc:
        assert str(len(secret)) in str(exc)
    else:
        raise AssertionError("a secret over 48 bytes was packed")


@FUZZ
@given(st.binary(max_size=40))
def test_unpack_config_arbitrary(data: bytes) -> None:
    c = uapi.unpack_config(data)
    padded = data[:28].ljust(28, b"\0")
    v = struct.unpack("<IIIIBBBBB3xI", padded)
    assert (c.version, c.plpmtud_probe_interval, c.keepalive_probe_interval) == (v[0], v[1], v[9])
    assert c.certificate_request == v[8]


CONFIGS = st.builds(
    uapi.QuicConfig,
    version=U32,
    plpmtud_probe_interval=U32,
    initial_smoothed_rtt=U32,
    payload_cipher_type=U32,
    congestion_control_algo=U8,
    validate_peer_address=U8,
    stream_data_nodelay=U8,
    receive_session_ticket=U8,
    certificate_request=U8,
    keepalive_probe_interval=U32,
)


@FUZZ
@given(CONFIGS)
def test_config_round_trip(c: uapi.QuicConfig) -> None:
    raw = uapi.pack_config(c)
    assert len(raw) == 28
    assert uapi.unpack_config(raw) == c
    # an older kernel's 24-byte config: keepalive (the last u32) reads as 0
    assert uapi.unpack_config(raw[:24]) == uapi.QuicConfig(
        **{**{f: getattr(c, f) for f in c.__dataclass_fields__}, "keepalive_probe_interval": 0}
    )


@FUZZ
@given(st.binary(max_size=100))
def test_unpack_connection_close_arbitrary(data: bytes) -> None:
    try:
        c = uapi.unpack_connection_close(data)
    except ValueError:
        assert len(data) < 8
        return
    assert c.errcode == struct.unpack_from("<I", data)[0] and c.frame == data[4]
    assert b"\0" not in c.phrase and len(c.phrase) <= 64
    assert data[8:72].startswith(c.phrase)


@FUZZ
@given(U32, U8, st.binary(max_size=63).map(lambda b: b.replace(b"\0", b"x")))
def test_connection_close_round_trip(errcode: int, frame: int, phrase: bytes) -> None:
    c = uapi.ConnectionClose(errcode, frame, phrase)
    raw = uapi.pack_connection_close(c)
    assert len(raw) == 72 and raw[71] == 0  # NUL terminated
    assert uapi.unpack_connection_close(raw) == c


@FUZZ
@given(U32, U8, st.binary(min_size=64, max_size=200).map(lambda b: b.replace(b"\0", b"x")))
def test_connection_close_long_phrase_truncated(errcode: int, frame: int, phrase: bytes) -> None:
    raw = uapi.pack_connection_close(uapi.ConnectionClose(errcode, frame, phrase))
    assert uapi.unpack_connection_close(raw) == uapi.ConnectionClose(errcode, frame, phrase[:63])


@FUZZ
@given(st.binary(max_size=4))
def test_unpack_handshake_info_arbitrary(data: bytes) -> None:
    try:
        level = uapi.unpack_handshake_info(data)
    except ValueError:
        assert not data or data[0] > 3
        return
    assert int(level) == data[0]


@FUZZ
@given(st.sampled_from(list(uapi.CryptoLevel)), st.binary(max_size=3))
def test_handshake_info_round_trip(level: uapi.CryptoLevel, pad: bytes) -> None:
    raw = uapi.pack_handshake_info(level)
    assert raw == bytes([int(level)])
    assert uapi.unpack_handshake_info(raw + pad) is level


@FUZZ
@given(st.binary(max_size=300))
def test_parse_alpn_option_arbitrary(raw: bytes) -> None:
    try:
        out = uapi.parse_alpn_option(raw)
    except ValueError as exc:
        assert str(exc)
        return
    assert isinstance(out, tuple)
    value = raw.split(b"\0", 1)[0]
    assert len(value) <= uapi.QUIC_ALPN_MAX_LEN
    for p in out:
        assert p and b"," not in p and b"\0" not in p and not p.startswith(b" ")
        assert not p.endswith(b" ") and len(p) <= 255


ALPN_BYTE = st.integers(1, 255).filter(lambda c: c not in b", ")
ALPN_TOKEN = st.lists(ALPN_BYTE, min_size=1, max_size=20).map(bytes)


@FUZZ
@given(st.lists(ALPN_TOKEN, min_size=1, max_size=8))
def test_alpn_option_round_trip(alpns: list[bytes]) -> None:
    raw = uapi.format_alpn_option(alpns)
    if len(raw) > uapi.QUIC_ALPN_MAX_LEN:
        try:
            uapi.parse_alpn_option(raw)
        except ValueError as exc:
            assert str(len(raw)) in str(exc)
        else:
            raise AssertionError(f"{len(raw)}-byte ALPN option accepted")
        return
    assert uapi.parse_alpn_option(raw) == tuple(alpns)
    assert uapi.parse_alpn_option(raw + b"\0junk") == tuple(alpns)
    spaced = b", ".join(alpns)
    if len(spaced) <= uapi.QUIC_ALPN_MAX_LEN:
        assert uapi.parse_alpn_option(spaced) == tuple(alpns)
