# SPDX-License-Identifier: GPL-2.0-or-later
"""Property tests of the handshake netlink codec (quichsd/netlink/codec.py).

Valid READY/ACCEPT replies are built here by hand with ``struct.pack`` from the layouts in
``docs/kernel-interfaces.md`` §1 (never by quichsd's encoder), then decoded as they are, and
mutated (truncated, bit-flipped, an attribute's length field rewritten). The decoder must
return a valid :class:`AcceptRequest` or raise :class:`MalformedMessage` naming the
attribute and the problem, carrying the SOCKFD whenever a well-formed one came before the
damage; any other exception is a bug.
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from quichsd import uapi
from quichsd.netlink.codec import (
    AcceptRequest,
    MalformedMessage,
    decode_accept_reply,
    decode_error,
    decode_ready,
    encode_done,
    parse_message,
)

FAMILY = 0x21
FUZZ = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

S32 = st.integers(-(2**31), 2**31 - 1)
U32 = st.integers(0, 2**32 - 1)


def attr(atype: int, payload: bytes) -> bytes:
    """nlattr =HH (length unpadded, type) + payload, padded to 4."""
    length = 4 + len(payload)
    return struct.pack("=HH", length, atype) + payload + b"\0" * (-length % 4)


def message(cmd: int, attrs: bytes, version: int = 1) -> bytes:
    """nlmsghdr =IHHII + genlmsghdr =BBH + attributes."""
    body = struct.pack("=BBH", cmd, version, 0) + attrs
    return struct.pack("=IHHII", 16 + len(body), FAMILY, 0, 7, 0) + body


@dataclass
class Reply:
    data: bytes
    attr_offsets: list[int]  # offset of each top-level attribute header within data
    expected: AcceptRequest


PRINTABLE_ASCII = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=255
)


@st.composite
def accept_replies(draw: st.DrawFn) -> Reply:
    """A well-formed ACCEPT reply with random fields, in a random attribute order."""
    sockfd = draw(S32)
    mt = draw(st.sampled_from([1, 2]))
    am = draw(st.sampled_from([0, 1, 2, 3]))
    timeout = draw(st.none() | U32)
    peer_ids = draw(st.lists(U32, max_size=4))
    cert = draw(st.none() | st.tuples(S32, S32))
    peername = draw(st.none() | PRINTABLE_ASCII)
    keyring = draw(st.none() | U32)
    unknown = draw(st.lists(st.tuples(st.integers(10, 0x3FFF), st.binary(max_size=12))))
    parts = [
        attr(1, struct.pack("=i", sockfd)),
        attr(2, struct.pack("=I", 1)),
        attr(3, struct.pack("=I", mt)),
        attr(5, struct.pack("=I", am)),
    ]
    if timeout is not None:
        parts.append(attr(4, struct.pack("=I", timeout)))
    parts += [attr(6, struct.pack("=I", p)) for p in peer_ids]
    if cert is not None:
        nested = attr(1, struct.pack("=i", cert[0])) + attr(2, struct.pack("=i", cert[1]))
        parts.append(attr(7 | 0x8000, nested))  # NLA_F_NESTED
    if peername is not None:
        parts.append(attr(8, peername.encode() + b"\0"))
    if keyring is not None:
        parts.append(attr(9, struct.pack("=I", keyring)))
    parts += [attr(t, p) for t, p in unknown]
    # the kernel sends SOCKFD first (§1.5) but any order must decode the same
    order = draw(st.permutations(range(len(parts))))
    parts = [parts[i] for i in order]
    pid_attr = {attr(6, struct.pack("=I", p)): p for p in peer_ids}
    wire_peer_ids = tuple(pid_attr[p] for p in parts if struct.unpack_from("=H", p, 2)[0] == 6)
    offsets, off = [], 20
    for p in parts:
        offsets.append(off)
        off += len(p)
    expected = AcceptRequest(
        sockfd=sockfd,
        message_type=uapi.MsgType(mt),
        auth_mode=uapi.AuthMode(am),
        timeout_ms=timeout or None,
        peer_identities=wire_peer_ids,  # in wire order
        cert_serial=(cert[0] or None) if cert else None,
        privkey_serial=(cert[1] or None) if cert else None,
        peername=peername,
        keyring=keyring or None,
    )
    return Reply(message(2, b"".join(parts)), offsets, expected)


def decodable_sockfd(data: bytes) -> int | None:
    """Reference: the first SOCKFD (type 1, 4-byte payload) met walking the attributes of a
    message whose headers are sound, before any structurally broken attribute."""
    if len(data) < 20:
        return None
    length = struct.unpack_from("=I", data)[0]
    if not 20 <= length <= len(data):
        return None
    area, off = data[20:length], 0
    while len(area) - off >= 4:
        alen, atype = struct.unpack_from("=HH", area, off)
        if alen < 4 or off + alen > len(area):
            return None
        if atype & 0x3FFF == 1 and alen == 8:
            return int(struct.unpack_from("=i", area, off + 4)[0])
        off += (alen + 3) & ~3
    return None


def check_valid(req: AcceptRequest) -> None:
    assert req.message_type in (uapi.MsgType.CLIENTHELLO, uapi.MsgType.SERVERHELLO)
    assert isinstance(req.auth_mode, uapi.AuthMode)
    assert req.timeout_ms is None or 0 < req.timeout_ms < 2**32
    assert all(0 <= p < 2**32 for p in req.peer_identities)
    if req.peername is not None:
        assert 0 < len(req.peername) <= 255
        assert req.peername.isascii() and req.peername.isprintable()


def decode_or_malformed(data: bytes) -> AcceptRequest | MalformedMessage:
    """The agent's pipeline: parse_message then decode_accept_reply."""
    try:
        req = decode_accept_reply(parse_message(data))
    except MalformedMessage as exc:
        assert exc.attribute and exc.problem, exc
        assert str(exc) == f"{exc.attribute}: {exc.problem}"
        assert exc.status in (errno.EINVAL, errno.EIO)
        assert exc.sockfd == decodable_sockfd(data), (exc, exc.sockfd)
        event(f"MalformedMessage {exc.attribute.split(' ')[0]}")
        return exc
    check_valid(req)
    assert req.sockfd == decodable_sockfd(data)
    event("AcceptRequest")
    return req


@FUZZ
@given(st.binary(max_size=256))
def test_arbitrary_bytes_accept(data: bytes) -> None:
    decode_or_malformed(data)


@FUZZ
@given(st.binary(max_size=128))
def test_arbitrary_attribute_area(area: bytes) -> None:
    """Sound headers, arbitrary attributes: exercises the attribute walk, not the header."""
    decode_or_malformed(message(2, area))


@FUZZ
@given(accept_replies())
def test_valid_reply_decodes_exactly(reply: Reply) -> None:
    assert decode_accept_reply(parse_message(reply.data)) == reply.expected


@FUZZ
@given(accept_replies(), st.data())
def test_truncated_reply(reply: Reply, data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(reply.data) - 1))
    raw = reply.data[:cut]
    # the nlmsghdr length is kept (recv cut short) or fixed up (a short message)
    if data.draw(st.booleans()) and cut >= 4:
        raw = struct.pack("=I", cut) + raw[4:]
    decode_or_malformed(raw)


@FUZZ
@given(accept_replies(), st.data())
def test_bit_flipped_reply(reply: Reply, data: st.DataObject) -> None:
    raw = bytearray(reply.data)
    for _ in range(data.draw(st.integers(1, 4))):
        bit = data.draw(st.integers(0, len(raw) * 8 - 1))
        raw[bit // 8] ^= 1 << (bit % 8)
    decode_or_malformed(bytes(raw))


@FUZZ
@given(accept_replies(), st.data())
def test_attribute_length_rewritten(reply: Reply, data: st.DataObject) -> None:
    off = data.draw(st.sampled_from(reply.attr_offsets))
    new_len = data.draw(st.integers(0, 0xFFFF))
    raw = bytearray(reply.data)
    struct.pack_into("=H", raw, off, new_len)
    decode_or_malformed(bytes(raw))


@FUZZ
@given(st.binary(max_size=96), st.data())
def test_ready_arbitrary(area: bytes, data: st.DataObject) -> None:
    raw = data.draw(st.sampled_from([area, message(1, area)]))
    try:
        handler_class = decode_ready(parse_message(raw))
    except MalformedMessage as exc:
        assert exc.attribute and exc.problem and exc.status == errno.EINVAL
        assert exc.sockfd is None
        return
    assert handler_class is None or 0 <= handler_class < 2**32


@FUZZ
@given(U32, st.binary(max_size=8))
def test_ready_valid_and_mutated(handler_class: int, junk: bytes) -> None:
    raw = message(1, attr(2, struct.pack("=I", handler_class)) + attr(77, junk))
    assert decode_ready(parse_message(raw)) == handler_class
    for cut in range(len(raw)):
        try:
            decode_ready(parse_message(raw[:cut]))
        except MalformedMessage as exc:
            assert exc.attribute and exc.problem


@FUZZ
@given(st.binary(max_size=64))
def test_decode_error_never_raises(data: bytes) -> None:
    out = decode_error(data)
    if out is not None:
        assert len(data) >= 20 and struct.unpack_from("=H", data, 4)[0] == 2


def parse_done(body: bytes) -> tuple[int, int, int, list[tuple[int, int]]]:
    """Reference decoder of a DONE genl body: (cmd, version, reserved, [(type, value)])."""
    cmd, version, reserved = struct.unpack_from("=BBH", body)
    out, off = [], 4
    while off < len(body):
        alen, atype = struct.unpack_from("=HH", body, off)
        assert alen == 8, "every DONE attribute is a 4-byte integer"
        fmt = "=i" if atype == 2 else "=I"
        out.append((atype, struct.unpack_from(fmt, body, off + 4)[0]))
        off += 8
    assert off == len(body)
    return cmd, version, reserved, out


@FUZZ
@given(st.integers(0, 4095), S32, st.lists(U32, max_size=6))
def test_encode_done_round_trip(status: int, sockfd: int, serials: list[int]) -> None:
    cmd, version, reserved, attrs = parse_done(encode_done(status, sockfd, tuple(serials)))
    assert (cmd, version, reserved) == (3, 1, 0)
    expected = [(1, status), (2, sockfd)]
    if status == 0:
        expected += [(3, s) for s in serials]
    assert attrs == expected


@FUZZ
@given(st.integers(), st.integers(), st.lists(st.integers(), max_size=3))
def test_encode_done_out_of_range(status: int, sockfd: int, serials: list[int]) -> None:
    ok = (
        0 <= status <= 4095
        and -(2**31) <= sockfd < 2**31
        and (status != 0 or all(0 <= s < 2**32 for s in serials))
    )
    try:
        body = encode_done(status, sockfd, tuple(serials))
    except ValueError as exc:
        assert not ok
        assert "DONE" in str(exc)
        return
    assert ok
    assert parse_done(body)[3][:2] == [(1, status), (2, sockfd)]
