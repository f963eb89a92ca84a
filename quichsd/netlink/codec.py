# SPDX-License-Identifier: GPL-2.0-or-later
"""Wire codec of the generic netlink family ``handshake``. Pure: bytes in, values out.

Layouts (``docs/kernel-interfaces.md`` §1, ``linux/handshake.h``; all host byte order):

* ``nlmsghdr``  ``=IHHII``: length (whole message), type (the family id), flags, seq, pid
* ``genlmsghdr`` ``=BBH``: cmd, version, reserved
* ``nlattr``    ``=HH``: length (header + payload, unpadded), type; the payload follows and
  the next attribute starts at the 4-byte aligned offset. Type bits 15/14 are the
  ``NLA_F_NESTED`` / ``NLA_F_NET_BYTEORDER`` flags and are masked off.

Decoding is tolerant of what older or newer kernels may legitimately do (absent
PEERNAME/KEYRING/TIMEOUT, unknown attribute ids, a missing pad after the last attribute)
and strict about everything else: a structural problem raises :class:`MalformedMessage`
naming the attribute and the problem, carrying the accepted fd when it was decoded so
the caller can still answer DONE and close it.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from .. import uapi
from ..errors import InvalidRequest

NLMSG_HDR = struct.Struct("=IHHII")
GENL_HDR = struct.Struct("=BBH")
NLA_HDR = struct.Struct("=HH")
_U32 = struct.Struct("=I")
_S32 = struct.Struct("=i")

NLMSG_ERROR = 2
NLM_F_REQUEST = 0x01
NLM_F_ACK = 0x04
NLA_TYPE_MASK = 0x3FFF  # clears NLA_F_NESTED (0x8000) and NLA_F_NET_BYTEORDER (0x4000)
NLA_F_NESTED = 0x8000

#: names used in error messages and logs, by accept attribute id
ACCEPT_ATTR_NAMES = {
    uapi.HANDSHAKE_A_ACCEPT_SOCKFD: "SOCKFD",
    uapi.HANDSHAKE_A_ACCEPT_HANDLER_CLASS: "HANDLER_CLASS",
    uapi.HANDSHAKE_A_ACCEPT_MESSAGE_TYPE: "MESSAGE_TYPE",
    uapi.HANDSHAKE_A_ACCEPT_TIMEOUT: "TIMEOUT",
    uapi.HANDSHAKE_A_ACCEPT_AUTH_MODE: "AUTH_MODE",
    uapi.HANDSHAKE_A_ACCEPT_PEER_IDENTITY: "PEER_IDENTITY",
    uapi.HANDSHAKE_A_ACCEPT_CERTIFICATE: "CERTIFICATE",
    uapi.HANDSHAKE_A_ACCEPT_PEERNAME: "PEERNAME",
    uapi.HANDSHAKE_A_ACCEPT_KEYRING: "KEYRING",
}

#: longest PEERNAME we accept (a DNS name is at most 253 characters; leave room for IPv6)
PEERNAME_MAX = 255


class MalformedMessage(InvalidRequest):
    """A handshake netlink message could not be decoded.

    ``attribute`` names the offending part ("nlmsghdr", "genlmsghdr", "SOCKFD", ...);
    ``sockfd`` is the accepted fd when it was decoded before the problem was found (the
    caller must then answer DONE with ``status`` and close it); ``status`` is EINVAL for
    a malformed message and EIO for a well-formed value quichsd does not know.
    """

    def __init__(
        self,
        attribute: str,
        problem: str,
        *,
        sockfd: int | None = None,
        status: int = errno.EINVAL,
    ) -> None:
        super().__init__(f"{attribute}: {problem}", status=status)
        self.attribute = attribute
        self.problem = problem
        self.sockfd = sockfd


@dataclass(frozen=True, slots=True)
class NlMessage:
    """One netlink message split into its headers and raw attribute area."""

    nl_type: int
    flags: int
    seq: int
    pid: int
    cmd: int
    version: int
    attrs: bytes  # everything after the genl header


@dataclass(frozen=True, slots=True)
class AcceptRequest:
    """What the kernel handed over with an accepted handshake request (§1.4, §1.5)."""

    sockfd: int
    message_type: uapi.MsgType
    auth_mode: uapi.AuthMode
    timeout_ms: int | None = None  # None: the consumer set no timeout (absent or 0)
    peer_identities: tuple[int, ...] = ()  # PSK key serials
    cert_serial: int | None = None  # x509: our certificate's key serial
    privkey_serial: int | None = None  # x509: our private key's key serial
    peername: str | None = None  # SNI / name to verify
    keyring: int | None = None  # keyring serial to link for this handshake


# --- framing ----------------------------------------------------------------------------


def nla(attr_type: int, payload: bytes) -> bytes:
    """One attribute, padded to 4 bytes."""
    length = NLA_HDR.size + len(payload)
    return NLA_HDR.pack(length, attr_type) + payload + b"\0" * (-length % 4)


def genl_body(cmd: int, attrs: bytes, version: int = uapi.HANDSHAKE_FAMILY_VERSION) -> bytes:
    """genlmsghdr + attributes: the part of a request a netlink socket library frames."""
    return GENL_HDR.pack(cmd, version, 0) + attrs


def frame(nl_type: int, flags: int, seq: int, pid: int, body: bytes) -> bytes:
    """Prefix ``body`` with an nlmsghdr."""
    return NLMSG_HDR.pack(NLMSG_HDR.size + len(body), nl_type, flags, seq, pid) + body


def parse_message(data: bytes) -> NlMessage:
    """Split one generic netlink message; ``data`` may hold trailing bytes (ignored)."""
    if len(data) < NLMSG_HDR.size:
        raise MalformedMessage("nlmsghdr", f"message of {len(data)} bytes is shorter than 16")
    length, nl_type, flags, seq, pid = NLMSG_HDR.unpack_from(data)
    if length > len(data):
        raise MalformedMessage("nlmsghdr", f"length {length} exceeds the {len(data)} bytes read")
    if length < NLMSG_HDR.size + GENL_HDR.size:
        raise MalformedMessage("genlmsghdr", f"message length {length} leaves no genl header")
    cmd, version, _reserved = GENL_HDR.unpack_from(data, NLMSG_HDR.size)
    start = NLMSG_HDR.size + GENL_HDR.size
    return NlMessage(nl_type, flags, seq, pid, cmd, version, bytes(data[start:length]))


def iter_attrs(area: bytes, where: str = "") -> Iterator[tuple[int, bytes]]:
    """Yield ``(type, payload)`` for each attribute; raise on a truncated or bad header."""
    off = 0
    while off < len(area):
        if len(area) - off < NLA_HDR.size:
            raise MalformedMessage(
                f"{where}attribute at offset {off}",
                f"truncated: {len(area) - off} bytes left, an attribute header needs 4",
            )
        length, attr_type = NLA_HDR.unpack_from(area, off)
        if length < NLA_HDR.size:
            raise MalformedMessage(
                f"{where}attribute {attr_type & NLA_TYPE_MASK} at offset {off}",
                f"length {length} is shorter than its 4-byte header",
            )
        if off + length > len(area):
            raise MalformedMessage(
                f"{where}attribute {attr_type & NLA_TYPE_MASK} at offset {off}",
                f"truncated: length {length} but only {len(area) - off} bytes left",
            )
        yield attr_type & NLA_TYPE_MASK, area[off + NLA_HDR.size : off + length]
        off += (length + 3) & ~3


def _u32(name: str, payload: bytes, sockfd: int | None) -> int:
    if len(payload) != 4:
        raise MalformedMessage(
            name, f"expected a 4-byte u32, got {len(payload)} bytes", sockfd=sockfd
        )
    return int(_U32.unpack(payload)[0])


def _s32(name: str, payload: bytes, sockfd: int | None) -> int:
    if len(payload) != 4:
        raise MalformedMessage(
            name, f"expected a 4-byte s32, got {len(payload)} bytes", sockfd=sockfd
        )
    return int(_S32.unpack(payload)[0])


# --- READY ------------------------------------------------------------------------------


def decode_ready(msg: NlMessage) -> int | None:
    """The handler class of a READY notification (None when the attribute is absent)."""
    if msg.cmd != uapi.HANDSHAKE_CMD_READY:
        raise MalformedMessage("genlmsghdr", f"cmd {msg.cmd} is not READY (1)")
    handler_class = None
    for attr_type, payload in iter_attrs(msg.attrs):
        if attr_type == uapi.HANDSHAKE_A_ACCEPT_HANDLER_CLASS:
            handler_class = _u32("HANDLER_CLASS", payload, None)
    return handler_class


# --- ACCEPT -----------------------------------------------------------------------------


def encode_accept_request(handler_class: int = uapi.HANDSHAKE_HANDLER_CLASS_TLSHD) -> bytes:
    """genl body of ``HANDSHAKE_CMD_ACCEPT`` {HANDLER_CLASS}."""
    attr = nla(uapi.HANDSHAKE_A_ACCEPT_HANDLER_CLASS, _U32.pack(handler_class))
    return genl_body(uapi.HANDSHAKE_CMD_ACCEPT, attr)


def _find_sockfd(area: bytes) -> int | None:
    """Best-effort first pass: the fd, so later errors can carry it."""
    try:
        for attr_type, payload in iter_attrs(area):
            if attr_type == uapi.HANDSHAKE_A_ACCEPT_SOCKFD and len(payload) == 4:
                return int(_S32.unpack(payload)[0])
    except MalformedMessage:
        pass  # damage before any well-formed SOCKFD: the fd is unknown
    return None


def _decode_x509(payload: bytes, sockfd: int) -> tuple[int | None, int | None]:
    cert = privkey = None
    try:
        for attr_type, value in iter_attrs(payload, "CERTIFICATE nested "):
            if attr_type == uapi.HANDSHAKE_A_X509_CERT:
                cert = _s32("CERTIFICATE/CERT", value, sockfd)
            elif attr_type == uapi.HANDSHAKE_A_X509_PRIVKEY:
                privkey = _s32("CERTIFICATE/PRIVKEY", value, sockfd)
    except MalformedMessage as exc:
        raise MalformedMessage(exc.attribute, exc.problem, sockfd=sockfd) from None
    return (cert or None), (privkey or None)


def _decode_peername(payload: bytes, sockfd: int) -> str | None:
    raw = payload[:-1] if payload.endswith(b"\0") else payload  # nla_put_string's NUL
    if b"\0" in raw:  # refused, not cut short at the NUL (and verified as a shorter name)
        raise MalformedMessage("PEERNAME", "contains a NUL byte", sockfd=sockfd)
    if len(raw) > PEERNAME_MAX:
        raise MalformedMessage(
            "PEERNAME", f"{len(raw)} bytes exceeds {PEERNAME_MAX}", sockfd=sockfd
        )
    try:
        name = raw.decode("ascii")
    except UnicodeDecodeError:
        raise MalformedMessage("PEERNAME", "not an ASCII string", sockfd=sockfd) from None
    if not name.isprintable():
        raise MalformedMessage("PEERNAME", "contains control characters", sockfd=sockfd)
    return name or None


def decode_accept_reply(msg: NlMessage) -> AcceptRequest:
    """Decode the kernel's unicast reply to ACCEPT (§1.5 order; any order accepted)."""
    sockfd = _find_sockfd(msg.attrs)
    if msg.cmd != uapi.HANDSHAKE_CMD_ACCEPT:
        raise MalformedMessage("genlmsghdr", f"cmd {msg.cmd} is not ACCEPT (2)", sockfd=sockfd)
    fields: dict[int, int] = {}
    peer_ids: list[int] = []
    cert: tuple[int | None, int | None] | None = None
    peername: str | None = None
    try:
        attrs = list(iter_attrs(msg.attrs))
    except MalformedMessage as exc:
        raise MalformedMessage(exc.attribute, exc.problem, sockfd=sockfd) from None
    if sockfd is None:
        for attr_type, payload in attrs:
            if attr_type == uapi.HANDSHAKE_A_ACCEPT_SOCKFD:
                _s32("SOCKFD", payload, None)  # present, so its length is wrong: raises
        raise MalformedMessage("SOCKFD", "attribute missing")
    for attr_type, payload in attrs:
        name = ACCEPT_ATTR_NAMES.get(attr_type)
        if attr_type == uapi.HANDSHAKE_A_ACCEPT_SOCKFD:
            continue
        if attr_type == uapi.HANDSHAKE_A_ACCEPT_PEER_IDENTITY:
            peer_ids.append(_u32("PEER_IDENTITY", payload, sockfd))
        elif attr_type == uapi.HANDSHAKE_A_ACCEPT_CERTIFICATE:
            got = _decode_x509(payload, sockfd)
            cert = got if cert is None else cert  # the kernel sends one; keep the first
        elif attr_type == uapi.HANDSHAKE_A_ACCEPT_PEERNAME:
            peername = _decode_peername(payload, sockfd)
        elif name is not None:
            fields[attr_type] = _u32(name, payload, sockfd)
        # unknown ids (newer kernels, proposed KEY_UPDATE attrs): ignored
    if uapi.HANDSHAKE_A_ACCEPT_MESSAGE_TYPE not in fields:
        raise MalformedMessage("MESSAGE_TYPE", "attribute missing", sockfd=sockfd)
    mt = fields[uapi.HANDSHAKE_A_ACCEPT_MESSAGE_TYPE]
    if mt not in (uapi.MsgType.CLIENTHELLO, uapi.MsgType.SERVERHELLO):
        raise MalformedMessage(
            "MESSAGE_TYPE", f"unsupported value {mt}", sockfd=sockfd, status=errno.EIO
        )
    am = fields.get(uapi.HANDSHAKE_A_ACCEPT_AUTH_MODE, uapi.AuthMode.UNSPEC)
    if am not in uapi.AuthMode._value2member_map_:
        raise MalformedMessage(
            "AUTH_MODE", f"unsupported value {am}", sockfd=sockfd, status=errno.EIO
        )
    timeout = fields.get(uapi.HANDSHAKE_A_ACCEPT_TIMEOUT)
    keyring = fields.get(uapi.HANDSHAKE_A_ACCEPT_KEYRING)
    return AcceptRequest(
        sockfd=sockfd,
        message_type=uapi.MsgType(mt),
        auth_mode=uapi.AuthMode(am),
        timeout_ms=timeout or None,
        peer_identities=tuple(peer_ids),
        cert_serial=cert[0] if cert else None,
        privkey_serial=cert[1] if cert else None,
        peername=peername,
        keyring=keyring or None,
    )


# --- DONE -------------------------------------------------------------------------------


def encode_done(status: int, sockfd: int, remote_auth: tuple[int, ...] = ()) -> bytes:
    """genl body of ``HANDSHAKE_CMD_DONE`` {STATUS, SOCKFD, REMOTE_AUTH*}.

    ``status`` is a positive errno (0 = success) no larger than MAX_ERRNO; REMOTE_AUTH
    serials are sent only on success.
    """
    if not 0 <= status <= uapi.MAX_ERRNO:
        raise ValueError(f"DONE status {status} is not an errno in 0..{uapi.MAX_ERRNO}")
    if not -(2**31) <= sockfd < 2**31:
        raise ValueError(f"DONE sockfd {sockfd} does not fit an s32")
    attrs = nla(uapi.HANDSHAKE_A_DONE_STATUS, _U32.pack(status))
    attrs += nla(uapi.HANDSHAKE_A_DONE_SOCKFD, _S32.pack(sockfd))
    if status == 0:
        for serial in remote_auth:
            if not 0 <= serial < 2**32:
                raise ValueError(f"DONE remote-auth serial {serial} does not fit a u32")
            attrs += nla(uapi.HANDSHAKE_A_DONE_REMOTE_AUTH, _U32.pack(serial))
    return genl_body(uapi.HANDSHAKE_CMD_DONE, attrs)


def decode_error(msg_data: bytes) -> int | None:
    """For an NLMSG_ERROR message: the positive errno, 0 for an ACK; None otherwise."""
    if len(msg_data) < NLMSG_HDR.size + 4:
        return None
    _len, nl_type, _flags, _seq, _pid = NLMSG_HDR.unpack_from(msg_data)
    if nl_type != NLMSG_ERROR:
        return None
    return -int(_S32.unpack_from(msg_data, NLMSG_HDR.size)[0])
