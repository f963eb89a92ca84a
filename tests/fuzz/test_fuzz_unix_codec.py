# SPDX-License-Identifier: GPL-2.0-or-later
"""Property tests of the unix service protocol codec (quichsd/unix/codec.py).

Any record decodes to a message or raises :class:`CodecError` with an errno the ERROR reply
can carry (EBADMSG, EMSGSIZE, EPROTONOSUPPORT) and a message; never another exception.
Valid messages round-trip through encode/decode, and every size limit of
docs/unix-protocol.md holds on both sides.
"""

from __future__ import annotations

import errno
import struct

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from quichsd import uapi
from quichsd.unix import codec
from quichsd.unix.codec import (
    MAX_ATTRS,
    MAX_MESSAGE,
    Attr,
    Closed,
    CodecError,
    Crypto,
    Error,
    MsgType,
    OpError,
    Option,
    Request,
    Result,
    SocketSettings,
)

FUZZ = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
STATUSES = {errno.EBADMSG, errno.EMSGSIZE, errno.EPROTONOSUPPORT}

U32 = st.integers(0, 2**32 - 1)


def text(max_bytes: int, min_size: int = 0) -> st.SearchStrategy[str]:
    """Text whose UTF-8 form fits ``max_bytes`` (a character is at most 4 bytes)."""
    return st.text(min_size=min_size, max_size=max_bytes // 4)


def decode_checked(record: bytes) -> codec.Message | CodecError:
    try:
        msg = codec.decode(record)
    except CodecError as exc:
        assert exc.status in STATUSES, exc.status
        assert str(exc)
        event(f"CodecError {errno.errorcode[exc.status]}")
        return exc
    event(f"decoded {type(msg).__name__}")
    # anything that decodes is a valid message: it encodes again, to an equivalent record
    assert codec.decode(codec.encode(msg)) == msg
    return msg


# -- structured records: a plausible header, attributes of any type and length ---------------
ATTR_TYPES = st.one_of(st.sampled_from([int(a) for a in Attr]), st.integers(0, 0xFFFF))
MSG_TYPES = st.one_of(st.sampled_from([int(t) for t in MsgType]), st.integers(0, 255))


@st.composite
def raw_attr(draw: st.DrawFn) -> bytes:
    atype = draw(ATTR_TYPES)
    value = draw(
        st.one_of(
            st.binary(max_size=8),
            st.sampled_from([b"\x01", b"\x02", b"\x03", b"\0\0\0\x05", b"\0\0\0\x0c"]),
            st.binary(min_size=28, max_size=28),
            st.text(max_size=8).map(str.encode),
        )
    )
    length = len(value) if draw(st.integers(0, 9)) else draw(st.integers(0, 0xFFFF))
    return struct.pack(">HH", atype, length) + value


@st.composite
def records(draw: st.DrawFn) -> bytes:
    version = 1 if draw(st.integers(0, 9)) else draw(st.integers(0, 255))
    mtype = draw(MSG_TYPES)
    attrs = draw(st.lists(raw_attr(), max_size=6))
    count = len(attrs) if draw(st.integers(0, 9)) else draw(st.integers(0, 0xFFFF))
    tail = draw(st.one_of(st.just(b""), st.binary(max_size=4)))
    return struct.pack(">BBH", version, mtype, count) + b"".join(attrs) + tail


@FUZZ
@given(st.binary(max_size=200))
def test_arbitrary_bytes(record: bytes) -> None:
    decode_checked(record)


@FUZZ
@given(records())
def test_structured_records(record: bytes) -> None:
    decode_checked(record)


# -- valid messages ----------------------------------------------------------------------
ALPN_BYTE = st.integers(1, 255).filter(lambda c: c not in b", ")
ALPN_TOKEN = st.lists(ALPN_BYTE, min_size=1, max_size=12).map(bytes)
ALPN = st.lists(ALPN_TOKEN, max_size=5).map(b",".join).filter(lambda b: len(b) <= 128)
ROLES = st.sampled_from([uapi.MsgType.CLIENTHELLO, uapi.MsgType.SERVERHELLO])
AUTHS = st.sampled_from([uapi.AuthMode.UNAUTH, uapi.AuthMode.PSK, uapi.AuthMode.X509])
LEVELS = st.sampled_from(
    [uapi.CryptoLevel.INITIAL, uapi.CryptoLevel.HANDSHAKE, uapi.CryptoLevel.APP]
)

SETTINGS = st.builds(
    SocketSettings,
    config=st.binary(min_size=28, max_size=28),
    alpn=ALPN,
    session_ticket=st.binary(max_size=4096),
    transport_param_ext=st.binary(max_size=512),
)
REQUESTS = st.builds(
    Request,
    role=ROLES,
    auth=AUTHS,
    peer_name=st.none() | text(255, min_size=1),
    timeout_ms=st.none() | st.integers(1, 2**32 - 1),
    psk_serials=st.lists(U32, max_size=8).map(tuple),
    cert_serial=st.none() | U32,
    privkey_serial=st.none() | U32,
    settings=st.none() | SETTINGS,
)
MESSAGES = st.one_of(
    REQUESTS,
    st.builds(
        Crypto, level=LEVELS, data=st.binary(min_size=1, max_size=2048), outgoing=st.just(False)
    ),
    st.builds(
        Crypto,
        level=LEVELS,
        data=st.binary(min_size=1, max_size=2048),
        more=st.booleans(),
        outgoing=st.just(True),
    ),
    st.builds(
        Option,
        option=st.sampled_from(codec.UPDATABLE_OPTIONS),
        value=st.binary(max_size=4096),
        outgoing=st.just(False),
    ),
    st.builds(Option, option=U32, value=st.binary(max_size=4096), outgoing=st.just(True)),
    st.builds(Closed, close=st.none() | st.binary(max_size=4096)),
    st.builds(OpError, status=st.integers(1, 4095), text=text(1024)),
    st.builds(
        Result,
        status=st.integers(0, 4095),
        alpn=st.none() | st.binary(max_size=128),
        cipher=st.none() | U32,
        group=st.none() | text(64),
        resumed=st.booleans(),
        early_data=st.booleans(),
        error=st.none() | text(1024),
        elapsed_us=st.integers(0, 2**32 - 1),
    ),
    st.builds(Error, status=st.integers(1, 4095), text=text(1024), version=st.integers(0, 255)),
)


@FUZZ
@given(MESSAGES)
def test_round_trip(msg: codec.Message) -> None:
    record = codec.encode(msg)
    assert len(record) <= MAX_MESSAGE
    assert codec.decode(record) == msg


@FUZZ
@given(MESSAGES, st.data())
def test_mutated_valid_records(msg: codec.Message, data: st.DataObject) -> None:
    raw = bytearray(codec.encode(msg))
    how = data.draw(st.sampled_from(["truncate", "flip", "extend"]))
    if how == "truncate":
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    elif how == "flip":
        for _ in range(data.draw(st.integers(1, 4))):
            bit = data.draw(st.integers(0, len(raw) * 8 - 1))
            raw[bit // 8] ^= 1 << (bit % 8)
    else:
        raw += data.draw(st.binary(min_size=1, max_size=8))
    out = decode_checked(bytes(raw))
    if how in ("truncate", "extend"):
        assert isinstance(out, CodecError), "a cut or extended record still decoded"


# -- size limits ---------------------------------------------------------------------------
@FUZZ
@given(st.integers(MAX_MESSAGE + 1, MAX_MESSAGE + 4096))
def test_oversized_record(size: int) -> None:
    record = struct.pack(">BBH", 1, MsgType.CLOSED, 0) + b"\0" * (size - 4)
    out = decode_checked(record)
    assert isinstance(out, CodecError) and out.status == errno.EMSGSIZE


@FUZZ
@given(st.integers(MAX_ATTRS + 1, 0xFFFF))
def test_too_many_attributes(count: int) -> None:
    record = struct.pack(">BBH", 1, MsgType.CLOSED, count)
    out = decode_checked(record)
    assert isinstance(out, CodecError) and out.status == errno.EBADMSG
    assert str(MAX_ATTRS) in str(out)


#: (message type, attribute, limit) for byte and text attributes, with a valid rest
LIMITED = [
    (MsgType.CRYPTO, Attr.DATA, codec.MAX_CHUNK, [(Attr.LEVEL, b"\x01")]),
    (MsgType.CLOSED, Attr.VALUE, uapi.QUIC_TICKET_MAX_LEN, []),
    (MsgType.OP_ERROR, Attr.ERROR, codec.MAX_TEXT, [(Attr.STATUS, b"\0\0\0\x05")]),
    (MsgType.RESULT, Attr.ALPN, uapi.QUIC_ALPN_MAX_LEN, [(Attr.STATUS, b"\0\0\0\0")]),
    (MsgType.RESULT, Attr.GROUP, 64, [(Attr.STATUS, b"\0\0\0\0")]),
    (MsgType.HANDSHAKE, Attr.PEER_NAME, 255, [(Attr.ROLE, b"\x01"), (Attr.AUTH, b"\x01")]),
]


def build(mtype: int, attrs: list[tuple[int, bytes]]) -> bytes:
    out = struct.pack(">BBH", 1, mtype, len(attrs))
    for a, v in attrs:
        out += struct.pack(">HH", a, len(v)) + v
    return out


@FUZZ
@given(st.sampled_from(LIMITED), st.integers(0, 64), st.booleans())
def test_attribute_size_limits(
    case: tuple[MsgType, Attr, int, list[tuple[Attr, bytes]]], extra: int, over: bool
) -> None:
    mtype, attr, limit, rest = case
    size = limit + 1 + extra if over else max(1, limit - extra)
    record = build(mtype, [*rest, (attr, b"a" * size)])
    out = decode_checked(record)
    if over:
        assert isinstance(out, CodecError) and out.status == errno.EBADMSG
        assert attr.name in str(out) and str(limit) in str(out)
    else:
        assert not isinstance(out, CodecError), out
    if attr in (Attr.ERROR, Attr.GROUP, Attr.PEER_NAME):
        # the encoder cuts text to the limit, on a character boundary
        raw = codec.encode_raw(mtype, [(attr, "\u00e9" * size)])  # 2 bytes a character
        assert len(raw) - 8 == min(2 * size, limit - limit % 2)
    elif over:
        try:
            codec.encode_raw(mtype, [(attr, b"a" * size)])
        except ValueError as exc:
            assert attr.name in str(exc)
        else:
            raise AssertionError(f"{attr.name} of {size} bytes encoded")


@FUZZ
@given(st.integers(0, 16))
def test_psk_serial_limit(n: int) -> None:
    attrs = [(Attr.ROLE, b"\x01"), (Attr.AUTH, b"\x02")]
    attrs += [(Attr.PSK_SERIAL, struct.pack(">I", i + 1)) for i in range(n)]
    out = decode_checked(build(MsgType.HANDSHAKE, attrs))
    if n > codec.MAX_PSK_SERIALS:
        assert isinstance(out, CodecError) and "PSK_SERIAL repeated" in str(out)
    else:
        assert isinstance(out, Request) and out.psk_serials == tuple(range(1, n + 1))
