# SPDX-License-Identifier: GPL-2.0-or-later
"""Byte-for-byte tests of the handshake netlink codec.

Every fixture is written here by hand from the spec tables in
``docs/kernel-interfaces.md`` §1 (ids, types, §1.5 reply order) using literal
numbers and ``struct.pack``; nothing is produced by quichsd's encoder or by pyroute2.

    nlmsghdr   =IHHII  len, type, flags, seq, pid
    genlmsghdr =BBH    cmd, version, reserved
    nlattr     =HH     len (unpadded), type; payload padded to 4

accept attrs: SOCKFD 1 s32, HANDLER_CLASS 2 u32, MESSAGE_TYPE 3 u32, TIMEOUT 4 u32,
AUTH_MODE 5 u32, PEER_IDENTITY 6 u32 multi, CERTIFICATE 7 nest{CERT 1 s32, PRIVKEY 2 s32},
PEERNAME 8 string, KEYRING 9 u32.  done attrs: STATUS 1 u32, SOCKFD 2 s32, REMOTE_AUTH 3 u32.
"""

from __future__ import annotations

import errno
import struct

import pytest

from quichsd import uapi
from quichsd.netlink.codec import (
    AcceptRequest,
    MalformedMessage,
    decode_accept_reply,
    decode_error,
    decode_ready,
    encode_accept_request,
    encode_done,
    frame,
    parse_message,
)

FAMILY = 0x21  # the id the 6.12 VM kernel gave "handshake" (docs/kernel-vm.md §3)
PID = 4242


def hdr(length: int, flags: int = 0, seq: int = 0, pid: int = 0, nl_type: int = FAMILY) -> bytes:
    return struct.pack("=IHHII", length, nl_type, flags, seq, pid)


def u32(attr: int, value: int) -> bytes:
    return struct.pack("=HHI", 8, attr, value)


def s32(attr: int, value: int) -> bytes:
    return struct.pack("=HHi", 8, attr, value)


def msg(cmd: int, attrs: bytes, flags: int = 0, seq: int = 0, pid: int = 0) -> bytes:
    return hdr(16 + 4 + len(attrs), flags, seq, pid) + struct.pack("=BBH", cmd, 1, 0) + attrs


# --- READY ------------------------------------------------------------------------------

READY = bytes.fromhex(
    "1c000000"  # nlmsg_len 28
    "2100"  # type: family 0x21
    "0000"  # flags
    "00000000"  # seq 0 (multicast)
    "00000000"  # pid 0 (kernel)
    "01010000"  # cmd READY 1, version 1
    "0800"
    "0200"
    "01000000"  # HANDLER_CLASS (2) = 1 (tlshd)
)


def test_ready_fixture_matches_struct_layout() -> None:
    assert READY == struct.pack("=IHHIIBBHHHI", 28, FAMILY, 0, 0, 0, 1, 1, 0, 8, 2, 1)


def test_decode_ready() -> None:
    m = parse_message(READY)
    assert (m.nl_type, m.seq, m.pid, m.cmd) == (FAMILY, 0, 0, 1)
    assert decode_ready(m) == 1


def test_decode_ready_other_class_and_no_class() -> None:
    assert decode_ready(parse_message(msg(1, u32(2, 0)))) == 0
    assert decode_ready(parse_message(msg(1, b""))) is None


def test_decode_ready_bad_class_length() -> None:
    bad = msg(1, struct.pack("=HHH", 6, 2, 1) + b"\0\0")
    with pytest.raises(MalformedMessage, match=r"HANDLER_CLASS: expected a 4-byte u32, got 2"):
        decode_ready(parse_message(bad))


# --- ACCEPT request ---------------------------------------------------------------------


def test_encode_accept_request() -> None:
    expected = bytes.fromhex("020100000800020001000000")  # cmd 2 v1; HANDLER_CLASS=1
    assert encode_accept_request() == expected
    framed = frame(FAMILY, 0x01, 7, PID, encode_accept_request())
    assert framed == struct.pack("=IHHII", 28, FAMILY, 1, 7, PID) + expected


# --- ACCEPT replies, in the kernel's order (§1.5) ----------------------------------------
# sockfd -> message-type -> peername -> timeout -> keyring -> auth-mode -> peer ids | cert

X509_CLIENT_FULL = msg(
    2,
    s32(1, 8)  # SOCKFD 8
    + u32(3, 1)  # MESSAGE_TYPE CLIENTHELLO
    + struct.pack("=HH", 16, 8)
    + b"server.test\0"  # PEERNAME, 12 bytes, no pad
    + u32(4, 3000)  # TIMEOUT 3000 ms
    + u32(9, 0x2A2B2C2D)  # KEYRING serial
    + u32(5, 3)  # AUTH_MODE X509
    + struct.pack("=HH", 20, 7 | 0x8000)  # CERTIFICATE, NLA_F_NESTED
    + s32(1, 0x11111111)  # CERT serial
    + s32(2, 0x22222222),  # PRIVKEY serial
    seq=9,
    pid=PID,
)


def test_accept_reply_x509_client_with_everything() -> None:
    assert len(X509_CLIENT_FULL) == 16 + 4 + 8 + 8 + 16 + 8 + 8 + 8 + 20
    req = decode_accept_reply(parse_message(X509_CLIENT_FULL))
    assert req == AcceptRequest(
        sockfd=8,
        message_type=uapi.MsgType.CLIENTHELLO,
        auth_mode=uapi.AuthMode.X509,
        timeout_ms=3000,
        peer_identities=(),
        cert_serial=0x11111111,
        privkey_serial=0x22222222,
        peername="server.test",
        keyring=0x2A2B2C2D,
    )


def test_accept_reply_x509_server_old_kernel_minimal() -> None:
    # no PEERNAME / TIMEOUT / KEYRING (6.12 kernel); nest without NLA_F_NESTED, cert only
    data = msg(2, s32(1, 9) + u32(3, 2) + u32(5, 3) + struct.pack("=HH", 12, 7) + s32(1, 77))
    req = decode_accept_reply(parse_message(data))
    assert req == AcceptRequest(9, uapi.MsgType.SERVERHELLO, uapi.AuthMode.X509, cert_serial=77)
    assert (req.timeout_ms, req.peername, req.keyring, req.privkey_serial) == (None,) * 4


def test_accept_reply_psk_client_several_peer_ids() -> None:
    # what the 6.12 NVMe host sent (docs/kernel-vm.md §4.2) plus two more identities
    data = msg(
        2,
        s32(1, 8)
        + u32(3, 1)
        + u32(4, 10000)
        + u32(5, 2)
        + u32(6, 0x1BDD3D81)
        + u32(6, 0x1BDD3D82)
        + u32(6, 5),
    )
    req = decode_accept_reply(parse_message(data))
    assert req.message_type is uapi.MsgType.CLIENTHELLO
    assert req.auth_mode is uapi.AuthMode.PSK
    assert req.peer_identities == (0x1BDD3D81, 0x1BDD3D82, 5)
    assert req.timeout_ms == 10000
    assert (req.cert_serial, req.privkey_serial, req.peername, req.keyring) == (None,) * 4


def test_accept_reply_psk_server_with_keyring() -> None:
    data = msg(2, s32(1, 10) + u32(3, 2) + u32(9, 0x3000) + u32(5, 2) + u32(6, 0))
    req = decode_accept_reply(parse_message(data))
    assert req.peer_identities == (0,)
    assert req.keyring == 0x3000
    assert req.timeout_ms is None


def test_accept_reply_anon_with_padded_peername() -> None:
    # "host.example\0" = 13 bytes -> nla_len 17, 3 pad bytes
    data = msg(
        2,
        s32(1, 7)
        + u32(3, 1)
        + struct.pack("=HH", 17, 8)
        + b"host.example\0"
        + b"\0\0\0"
        + u32(5, 1),
    )
    req = decode_accept_reply(parse_message(data))
    assert req == AcceptRequest(
        7, uapi.MsgType.CLIENTHELLO, uapi.AuthMode.UNAUTH, peername="host.example"
    )


def test_accept_reply_anon_minimal() -> None:
    req = decode_accept_reply(parse_message(msg(2, s32(1, 7) + u32(3, 1) + u32(5, 1))))
    assert req == AcceptRequest(7, uapi.MsgType.CLIENTHELLO, uapi.AuthMode.UNAUTH)


def test_unknown_attribute_ids_are_ignored() -> None:
    data = msg(
        2,
        s32(1, 8)
        + struct.pack("=HH", 7, 42)
        + b"abc"
        + b"\0"  # id 42, odd length, padded
        + u32(3, 2)
        + u32(10, 1)  # proposed KEY_UPDATE_REQUEST
        + u32(5, 2)
        + struct.pack("=HH", 4, 11),  # empty unknown attr
    )
    req = decode_accept_reply(parse_message(data))
    assert req == AcceptRequest(8, uapi.MsgType.SERVERHELLO, uapi.AuthMode.PSK)


def test_last_attribute_without_trailing_pad_is_accepted() -> None:
    body = s32(1, 7) + u32(3, 1) + struct.pack("=HH", 6, 8) + b"h\0"  # no pad after PEERNAME
    req = decode_accept_reply(parse_message(msg(2, body)))
    assert req.peername == "h"
    assert req.auth_mode is uapi.AuthMode.UNSPEC  # AUTH_MODE absent


def test_negative_sockfd_is_decoded_as_s32() -> None:
    req = decode_accept_reply(parse_message(msg(2, s32(1, -5) + u32(3, 1))))
    assert req.sockfd == -5


# --- malformed replies ----------------------------------------------------------------


def _malformed(data: bytes) -> MalformedMessage:
    with pytest.raises(MalformedMessage) as info:
        decode_accept_reply(parse_message(data))
    return info.value


def test_truncated_attribute_after_sockfd_carries_the_fd() -> None:
    data = msg(2, s32(1, 8) + u32(3, 1) + struct.pack("=HH", 8, 5) + b"\1\0")  # 2 of 4 bytes
    exc = _malformed(data)
    assert exc.sockfd == 8 and exc.status == errno.EINVAL
    assert str(exc) == "attribute 5 at offset 16: truncated: length 8 but only 6 bytes left"


def test_truncated_attribute_header() -> None:
    exc = _malformed(msg(2, s32(1, 8) + u32(3, 1) + b"\x08\x00"))
    assert exc.sockfd == 8
    assert "truncated: 2 bytes left, an attribute header needs 4" in str(exc)


def test_truncated_before_sockfd_has_no_fd() -> None:
    exc = _malformed(msg(2, struct.pack("=HH", 12, 3) + b"\0\0\0\0"))
    assert exc.sockfd is None
    assert str(exc) == "attribute 3 at offset 0: truncated: length 12 but only 8 bytes left"


def test_attribute_length_below_header() -> None:
    exc = _malformed(msg(2, s32(1, 8) + struct.pack("=HH", 2, 3)))
    assert exc.sockfd == 8
    assert "length 2 is shorter than its 4-byte header" in str(exc)


def test_wrong_length_for_u32_attribute() -> None:
    exc = _malformed(msg(2, s32(1, 8) + struct.pack("=HHH", 6, 3, 1) + b"\0\0" + u32(5, 1)))
    assert (exc.attribute, exc.sockfd, exc.status) == ("MESSAGE_TYPE", 8, errno.EINVAL)
    assert exc.problem == "expected a 4-byte u32, got 2 bytes"


def test_wrong_length_for_peer_identity_and_timeout() -> None:
    exc = _malformed(msg(2, s32(1, 8) + u32(3, 1) + struct.pack("=HHQ", 12, 6, 1)))
    assert (exc.attribute, exc.sockfd) == ("PEER_IDENTITY", 8)
    exc = _malformed(msg(2, s32(1, 8) + u32(3, 1) + struct.pack("=HH", 4, 4)))
    assert (exc.attribute, exc.problem) == ("TIMEOUT", "expected a 4-byte u32, got 0 bytes")


def test_wrong_length_inside_certificate_nest() -> None:
    nest = struct.pack("=HH", 4 + 6, 7 | 0x8000) + struct.pack("=HHH", 6, 2, 1) + b"\0\0"
    exc = _malformed(msg(2, s32(1, 8) + u32(3, 1) + u32(5, 3) + nest))
    assert (exc.attribute, exc.sockfd) == ("CERTIFICATE/PRIVKEY", 8)


def test_truncated_inside_certificate_nest() -> None:
    nest = struct.pack("=HH", 4 + 6, 7 | 0x8000) + struct.pack("=HH", 8, 1) + b"\0\0" + b"\0\0"
    exc = _malformed(msg(2, s32(1, 8) + u32(3, 1) + u32(5, 3) + nest))
    assert exc.sockfd == 8
    assert exc.attribute.startswith("CERTIFICATE nested attribute 1")


def test_missing_sockfd() -> None:
    exc = _malformed(msg(2, u32(3, 1) + u32(5, 1)))
    assert (exc.attribute, exc.problem, exc.sockfd) == ("SOCKFD", "attribute missing", None)


def test_sockfd_with_wrong_length() -> None:
    exc = _malformed(msg(2, struct.pack("=HHH", 6, 1, 8) + b"\0\0" + u32(3, 1)))
    assert (exc.attribute, exc.sockfd) == ("SOCKFD", None)
    assert exc.problem == "expected a 4-byte s32, got 2 bytes"


def test_missing_message_type_carries_fd() -> None:
    exc = _malformed(msg(2, s32(1, 8) + u32(5, 1)))
    assert (exc.attribute, exc.problem, exc.sockfd) == ("MESSAGE_TYPE", "attribute missing", 8)


@pytest.mark.parametrize("value", [0, 3, 4])
def test_unsupported_message_type_is_eio(value: int) -> None:
    exc = _malformed(msg(2, s32(1, 8) + u32(3, value) + u32(5, 1)))
    assert (exc.attribute, exc.sockfd, exc.status) == ("MESSAGE_TYPE", 8, errno.EIO)
    assert exc.problem == f"unsupported value {value}"


def test_unknown_auth_mode_is_eio() -> None:
    exc = _malformed(msg(2, s32(1, 8) + u32(3, 1) + u32(5, 9)))
    assert (exc.attribute, exc.sockfd, exc.status) == ("AUTH_MODE", 8, errno.EIO)


def test_peername_not_ascii() -> None:
    exc = _malformed(msg(2, s32(1, 8) + u32(3, 1) + struct.pack("=HH", 8, 8) + b"h\xc3\xa9\0"))
    assert (exc.attribute, exc.problem, exc.sockfd) == ("PEERNAME", "not an ASCII string", 8)


def test_issue11_item3_peername_with_a_nul_is_refused_not_cut() -> None:
    """issue 11 item 3: "server.test\\0.evil.test" is malformed, not "server.test"."""
    name = b"server.test\0.evil.test\0"
    body = s32(1, 8) + u32(3, 1) + struct.pack("=HH", 4 + len(name), 8) + name  # 28: no pad
    exc = _malformed(msg(2, body))
    assert (exc.attribute, exc.problem, exc.sockfd) == ("PEERNAME", "contains a NUL byte", 8)


def test_peername_with_control_character() -> None:
    exc = _malformed(msg(2, s32(1, 8) + u32(3, 1) + struct.pack("=HH", 8, 8) + b"a\nb\0"))
    assert (exc.attribute, exc.sockfd) == ("PEERNAME", 8)


def test_reply_with_wrong_command() -> None:
    exc = _malformed(msg(3, s32(1, 8) + u32(3, 1)))
    assert (exc.attribute, exc.sockfd) == ("genlmsghdr", 8)
    assert exc.problem == "cmd 3 is not ACCEPT (2)"


def test_nlmsghdr_problems() -> None:
    with pytest.raises(MalformedMessage, match=r"^nlmsghdr: message of 10 bytes"):
        parse_message(b"\0" * 10)
    with pytest.raises(MalformedMessage, match=r"^nlmsghdr: length 40 exceeds the 28 bytes"):
        parse_message(hdr(40) + struct.pack("=BBH", 2, 1, 0) + u32(3, 1))
    with pytest.raises(MalformedMessage, match=r"^genlmsghdr: message length 16"):
        parse_message(hdr(16) + b"\0" * 4)


def test_message_length_bounds_the_attributes() -> None:
    data = msg(2, s32(1, 8) + u32(3, 1)) + u32(5, 3)  # trailing bytes outside nlmsg_len
    req = decode_accept_reply(parse_message(data))
    assert req.auth_mode is uapi.AuthMode.UNSPEC


# --- DONE -------------------------------------------------------------------------------


def test_encode_done_success_with_remote_auth() -> None:
    expected = bytes.fromhex(
        "03010000"  # cmd DONE 3, version 1
        "0800"
        "0100"
        "00000000"  # STATUS (1) = 0
        "0800"
        "0200"
        "08000000"  # SOCKFD (2) = 8
        "0800"
        "0300"
        "813ddd1b"  # REMOTE_AUTH (3) = 0x1bdd3d81
        "0800"
        "0300"
        "ffffffff"  # REMOTE_AUTH (3) = UINT_MAX (tlshd's server placeholder)
    )
    assert encode_done(0, 8, (0x1BDD3D81, 0xFFFFFFFF)) == expected
    framed = frame(FAMILY, 0x05, 3, PID, expected)
    assert framed == struct.pack("=IHHII", 16 + len(expected), FAMILY, 5, 3, PID) + expected


def test_encode_done_failure_omits_remote_auth() -> None:
    expected = struct.pack("=BBH", 3, 1, 0) + struct.pack("=HHI", 8, 1, 95)
    expected += struct.pack("=HHi", 8, 2, 8)
    assert encode_done(95, 8) == expected
    assert encode_done(95, 8, (1, 2)) == expected


def test_encode_done_bounds() -> None:
    assert encode_done(4095, 3)[8:12] == struct.pack("=I", 4095)
    for bad in (4096, -1, 5000):
        with pytest.raises(ValueError, match=r"DONE status .* is not an errno in 0\.\.4095"):
            encode_done(bad, 3)
    with pytest.raises(ValueError, match="remote-auth serial -1"):
        encode_done(0, 3, (-1,))
    with pytest.raises(ValueError, match="sockfd"):
        encode_done(0, 2**31)


def test_decode_error_messages() -> None:
    ack = struct.pack("=IHHIIi", 36, 2, 0x100, 255, PID, 0) + hdr(16)
    nak = struct.pack("=IHHIIi", 36, 2, 0, 5, PID, -errno.EAGAIN) + hdr(16)
    assert decode_error(ack) == 0
    assert decode_error(nak) == errno.EAGAIN
    assert decode_error(READY) is None
