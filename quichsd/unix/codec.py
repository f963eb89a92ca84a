# SPDX-License-Identifier: GPL-2.0-or-later
"""The unix service protocol, version 1: bytes <-> typed messages. Pure: no I/O.

One message is one ``SOCK_SEQPACKET`` record (docs/unix-protocol.md)::

    u8 version | u8 type | u16 attribute count | attributes...
    attribute: u16 type | u16 length | value (length bytes, no padding)

Integers are big-endian. A record is at most :data:`MAX_MESSAGE` bytes and carries at most
:data:`MAX_ATTRS` attributes. Every attribute has a fixed kind and size limit; an attribute
a message type does not allow, a repeated one (except ``PSK_SERIAL``, up to
:data:`MAX_PSK_SERIALS`), a missing required one or trailing bytes make the message
malformed. :func:`decode` raises :class:`CodecError` whose ``status`` is the errno of the
ERROR reply: ``EPROTONOSUPPORT`` for another version, ``EMSGSIZE`` for an oversized record,
``EBADMSG`` for everything else.
"""

from __future__ import annotations

import enum
import errno
import struct
from dataclasses import dataclass, field
from typing import Union

from .. import uapi

VERSION = 1
MAX_MESSAGE = 65536
MAX_ATTRS = 32
MAX_PSK_SERIALS = 8
#: handshake bytes per CRYPTO / SEND_CRYPTO record; longer data is split (the stream per
#: level is a byte stream, so the split is invisible to TLS)
MAX_CHUNK = 32768
MAX_TEXT = 1024

_HDR = struct.Struct(">BBH")
_ATTR = struct.Struct(">HH")


class CodecError(Exception):
    """A record that is not a valid version-1 message; ``status`` goes into ERROR."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class MsgType(enum.IntEnum):
    # client -> daemon
    HANDSHAKE = 1  # fd handoff: the QUIC socket travels in SCM_RIGHTS
    START = 2  # socket-ops: the daemon drives a socket the client owns
    CRYPTO = 3  # handshake data the client's QUIC stack received
    OPTION = 4  # an option value changed on the client's socket (NST, CONNECTION_CLOSE)
    CLOSED = 5  # the client's QUIC connection ended
    OP_ERROR = 6  # the client's stack refused a SEND_CRYPTO / SET_SOCKOPT
    # daemon -> client
    SEND_CRYPTO = 16
    SET_SOCKOPT = 17
    RESULT = 18
    ERROR = 19


class Attr(enum.IntEnum):
    ROLE = 1
    AUTH = 2
    PEER_NAME = 3
    TIMEOUT_MS = 4
    PSK_SERIAL = 5
    CERT_SERIAL = 6
    PRIVKEY_SERIAL = 7
    ALPN = 8
    CONFIG = 9
    SESSION_TICKET = 10
    TRANSPORT_PARAM_EXT = 11
    LEVEL = 12
    DATA = 13
    FLAGS = 14
    OPTION = 15
    VALUE = 16
    STATUS = 17
    CIPHER = 18
    GROUP = 19
    RESUMED = 20
    EARLY_DATA = 21
    ERROR = 22
    VERSION = 23
    ELAPSED_US = 24


class Kind(enum.Enum):
    U8 = 1
    U32 = 4
    BYTES = 0
    TEXT = -1


#: kind and maximum length of each attribute
_SPEC: dict[Attr, tuple[Kind, int]] = {
    Attr.ROLE: (Kind.U8, 1),
    Attr.AUTH: (Kind.U8, 1),
    Attr.PEER_NAME: (Kind.TEXT, 255),
    Attr.TIMEOUT_MS: (Kind.U32, 4),
    Attr.PSK_SERIAL: (Kind.U32, 4),
    Attr.CERT_SERIAL: (Kind.U32, 4),
    Attr.PRIVKEY_SERIAL: (Kind.U32, 4),
    Attr.ALPN: (Kind.BYTES, uapi.QUIC_ALPN_MAX_LEN),
    Attr.CONFIG: (Kind.BYTES, uapi.CONFIG_SIZE),
    Attr.SESSION_TICKET: (Kind.BYTES, uapi.QUIC_TICKET_MAX_LEN),
    Attr.TRANSPORT_PARAM_EXT: (Kind.BYTES, uapi.QUIC_TP_EXT_MAX_LEN),
    Attr.LEVEL: (Kind.U8, 1),
    Attr.DATA: (Kind.BYTES, MAX_CHUNK),
    Attr.FLAGS: (Kind.U32, 4),
    Attr.OPTION: (Kind.U32, 4),
    Attr.VALUE: (Kind.BYTES, uapi.QUIC_TICKET_MAX_LEN),
    Attr.STATUS: (Kind.U32, 4),
    Attr.CIPHER: (Kind.U32, 4),
    Attr.GROUP: (Kind.TEXT, 64),
    Attr.RESUMED: (Kind.U8, 1),
    Attr.EARLY_DATA: (Kind.U8, 1),
    Attr.ERROR: (Kind.TEXT, MAX_TEXT),
    Attr.VERSION: (Kind.U8, 1),
    Attr.ELAPSED_US: (Kind.U32, 4),
}

_REQ = {Attr.ROLE, Attr.AUTH, Attr.PEER_NAME, Attr.TIMEOUT_MS, Attr.PSK_SERIAL}
_REQ |= {Attr.CERT_SERIAL, Attr.PRIVKEY_SERIAL}
_SOCK = {Attr.ALPN, Attr.CONFIG, Attr.SESSION_TICKET, Attr.TRANSPORT_PARAM_EXT}
_RESULT = {Attr.STATUS, Attr.ALPN, Attr.CIPHER, Attr.GROUP, Attr.RESUMED, Attr.EARLY_DATA}
_RESULT |= {Attr.ERROR, Attr.ELAPSED_US}

#: (allowed, required) attributes per message type
_SCHEMA: dict[MsgType, tuple[set[Attr], set[Attr]]] = {
    MsgType.HANDSHAKE: (_REQ, {Attr.ROLE, Attr.AUTH}),
    MsgType.START: (_REQ | _SOCK, {Attr.ROLE, Attr.AUTH, Attr.CONFIG}),
    MsgType.CRYPTO: ({Attr.LEVEL, Attr.DATA}, {Attr.LEVEL, Attr.DATA}),
    MsgType.OPTION: ({Attr.OPTION, Attr.VALUE}, {Attr.OPTION, Attr.VALUE}),
    MsgType.CLOSED: ({Attr.VALUE}, set()),
    MsgType.OP_ERROR: ({Attr.STATUS, Attr.ERROR}, {Attr.STATUS}),
    MsgType.SEND_CRYPTO: ({Attr.LEVEL, Attr.DATA, Attr.FLAGS}, {Attr.LEVEL, Attr.DATA}),
    MsgType.SET_SOCKOPT: ({Attr.OPTION, Attr.VALUE}, {Attr.OPTION, Attr.VALUE}),
    MsgType.RESULT: (_RESULT, {Attr.STATUS}),
    MsgType.ERROR: ({Attr.STATUS, Attr.ERROR, Attr.VERSION}, {Attr.STATUS, Attr.VERSION}),
}

#: options a client may update with OPTION
UPDATABLE_OPTIONS = (uapi.QUIC_SOCKOPT_SESSION_TICKET, uapi.QUIC_SOCKOPT_CONNECTION_CLOSE)
FLAG_MORE = 1


# -- typed messages --------------------------------------------------------------------------
@dataclass(frozen=True)
class SocketSettings:
    """What the driver reads with getsockopt, as the client's socket holds it (START)."""

    config: bytes
    alpn: bytes = b""
    session_ticket: bytes = field(default=b"", repr=False)
    transport_param_ext: bytes = b""


@dataclass(frozen=True)
class Request:
    """HANDSHAKE (``settings`` None; the fd comes in SCM_RIGHTS) or START."""

    role: uapi.MsgType
    auth: uapi.AuthMode
    peer_name: str | None = None
    timeout_ms: int | None = None
    psk_serials: tuple[int, ...] = ()
    cert_serial: int | None = None
    privkey_serial: int | None = None
    settings: SocketSettings | None = None


@dataclass(frozen=True)
class Crypto:
    """CRYPTO (client -> daemon) or, with ``outgoing``, SEND_CRYPTO (daemon -> client)."""

    level: uapi.CryptoLevel
    data: bytes = field(repr=False)
    more: bool = False
    outgoing: bool = False


@dataclass(frozen=True)
class Option:
    """OPTION (client -> daemon) or, with ``outgoing``, SET_SOCKOPT (daemon -> client)."""

    option: int
    value: bytes = field(repr=False)
    outgoing: bool = False


@dataclass(frozen=True)
class Closed:
    close: bytes | None = None  # packed quic_connection_close, if the stack knows it


@dataclass(frozen=True)
class OpError:
    status: int
    text: str = ""


@dataclass(frozen=True)
class Result:
    status: int
    alpn: bytes | None = None
    cipher: int | None = None
    group: str | None = None
    resumed: bool = False
    early_data: bool = False
    error: str | None = None
    elapsed_us: int = 0


@dataclass(frozen=True)
class Error:
    status: int
    text: str
    version: int = VERSION


Message = Union[Request, Crypto, Option, Closed, OpError, Result, Error]  # noqa: UP007
Attrs = list[tuple[Attr, int | bytes | str]]


# -- encoding --------------------------------------------------------------------------------
def _value(attr: Attr, v: int | bytes | str) -> bytes:
    kind, limit = _SPEC[attr]
    if kind is Kind.U8:
        assert isinstance(v, int)
        raw = struct.pack(">B", v)
    elif kind is Kind.U32:
        assert isinstance(v, int)
        raw = struct.pack(">I", v)
    elif kind is Kind.TEXT:
        assert isinstance(v, str)
        raw = v.encode()[:limit].decode(errors="ignore").encode()
    else:
        assert isinstance(v, bytes)
        raw = v
    if len(raw) > limit:
        raise ValueError(f"{attr.name} of {len(raw)} bytes exceeds {limit}")
    return raw


def encode_raw(mtype: int, attrs: Attrs, *, version: int = VERSION) -> bytes:
    parts = [_HDR.pack(version, mtype, len(attrs))]
    for attr, v in attrs:
        raw = _value(attr, v)
        parts.append(_ATTR.pack(attr, len(raw)) + raw)
    out = b"".join(parts)
    if len(out) > MAX_MESSAGE:
        raise ValueError(f"message of {len(out)} bytes exceeds {MAX_MESSAGE}")
    return out


def _opt(attrs: Attrs, attr: Attr, v: int | bytes | str | None) -> None:
    if v is not None:
        attrs.append((attr, v))


def encode(msg: Message) -> bytes:
    """One record for ``msg`` (ValueError if a field exceeds its limit)."""
    a: Attrs = []
    if isinstance(msg, Request):
        a += [(Attr.ROLE, int(msg.role)), (Attr.AUTH, int(msg.auth))]
        _opt(a, Attr.PEER_NAME, msg.peer_name)
        _opt(a, Attr.TIMEOUT_MS, msg.timeout_ms)
        a += [(Attr.PSK_SERIAL, s) for s in msg.psk_serials]
        _opt(a, Attr.CERT_SERIAL, msg.cert_serial)
        _opt(a, Attr.PRIVKEY_SERIAL, msg.privkey_serial)
        s = msg.settings
        if s is None:
            return encode_raw(MsgType.HANDSHAKE, a)
        a += [(Attr.CONFIG, s.config), (Attr.ALPN, s.alpn)]
        a += [(Attr.SESSION_TICKET, s.session_ticket)]
        a += [(Attr.TRANSPORT_PARAM_EXT, s.transport_param_ext)]
        return encode_raw(MsgType.START, a)
    if isinstance(msg, Crypto):
        a += [(Attr.LEVEL, int(msg.level)), (Attr.DATA, msg.data)]
        if msg.outgoing:
            a.append((Attr.FLAGS, FLAG_MORE if msg.more else 0))
            return encode_raw(MsgType.SEND_CRYPTO, a)
        return encode_raw(MsgType.CRYPTO, a)
    if isinstance(msg, Option):
        a += [(Attr.OPTION, msg.option), (Attr.VALUE, msg.value)]
        return encode_raw(MsgType.SET_SOCKOPT if msg.outgoing else MsgType.OPTION, a)
    if isinstance(msg, Closed):
        _opt(a, Attr.VALUE, msg.close)
        return encode_raw(MsgType.CLOSED, a)
    if isinstance(msg, OpError):
        a.append((Attr.STATUS, msg.status))
        _opt(a, Attr.ERROR, msg.text or None)
        return encode_raw(MsgType.OP_ERROR, a)
    if isinstance(msg, Result):
        a.append((Attr.STATUS, msg.status))
        _opt(a, Attr.ALPN, msg.alpn)
        _opt(a, Attr.CIPHER, msg.cipher)
        _opt(a, Attr.GROUP, msg.group)
        a += [(Attr.RESUMED, int(msg.resumed)), (Attr.EARLY_DATA, int(msg.early_data))]
        _opt(a, Attr.ERROR, msg.error)
        a.append((Attr.ELAPSED_US, min(msg.elapsed_us, 2**32 - 1)))
        return encode_raw(MsgType.RESULT, a)
    a += [(Attr.STATUS, msg.status), (Attr.VERSION, msg.version), (Attr.ERROR, msg.text)]
    return encode_raw(MsgType.ERROR, a)


def error_reply(status: int, text: str) -> bytes:
    return encode(Error(status, text))


# -- decoding --------------------------------------------------------------------------------
def _bad(message: str) -> CodecError:
    return CodecError(errno.EBADMSG, message)


def parse(record: bytes) -> tuple[MsgType, dict[Attr, list[int | bytes | str]]]:
    """Framing and schema checks; values decoded by kind."""
    if len(record) > MAX_MESSAGE:
        raise CodecError(errno.EMSGSIZE, f"message of {len(record)} bytes exceeds {MAX_MESSAGE}")
    if len(record) < _HDR.size:
        raise _bad(f"message of {len(record)} bytes is shorter than the 4-byte header")
    version, mtype, count = _HDR.unpack_from(record)
    if version != VERSION:
        raise CodecError(
            errno.EPROTONOSUPPORT,
            f"protocol version {version} is not supported; this daemon speaks version {VERSION}",
        )
    try:
        t = MsgType(mtype)
    except ValueError:
        raise _bad(f"unknown message type {mtype}") from None
    if count > MAX_ATTRS:
        raise _bad(f"{t.name}: {count} attributes exceed the limit of {MAX_ATTRS}")
    allowed, required = _SCHEMA[t]
    out: dict[Attr, list[int | bytes | str]] = {}
    pos = _HDR.size
    for i in range(count):
        if pos + _ATTR.size > len(record):
            raise _bad(f"{t.name}: attribute {i} header truncated at offset {pos}")
        atype, length = _ATTR.unpack_from(record, pos)
        pos += _ATTR.size
        if pos + length > len(record):
            raise _bad(
                f"{t.name}: attribute {atype} at offset {pos - 4} claims {length} bytes, "
                f"{len(record) - pos} left"
            )
        raw = record[pos : pos + length]
        pos += length
        try:
            attr = Attr(atype)
        except ValueError:
            raise _bad(f"{t.name}: unknown attribute {atype}") from None
        if attr not in allowed:
            raise _bad(f"{t.name}: attribute {attr.name} not allowed")
        values = out.setdefault(attr, [])
        limit = MAX_PSK_SERIALS if attr is Attr.PSK_SERIAL else 1
        if len(values) >= limit:
            raise _bad(f"{t.name}: attribute {attr.name} repeated")
        values.append(_decode_value(t, attr, raw))
    if pos != len(record):
        raise _bad(f"{t.name}: {len(record) - pos} trailing bytes after {count} attributes")
    missing = sorted(a.name for a in required - out.keys())
    if missing:
        raise _bad(f"{t.name}: missing attribute(s) {', '.join(missing)}")
    return t, out


def _decode_value(t: MsgType, attr: Attr, raw: bytes) -> int | bytes | str:
    kind, limit = _SPEC[attr]
    if kind in (Kind.U8, Kind.U32):
        if len(raw) != kind.value:
            raise _bad(f"{t.name}: {attr.name} has {len(raw)} bytes, expected {kind.value}")
        return int.from_bytes(raw, "big")
    if len(raw) > limit:
        raise _bad(f"{t.name}: {attr.name} of {len(raw)} bytes exceeds {limit}")
    if kind is Kind.TEXT:
        try:
            return raw.decode()
        except UnicodeDecodeError:
            raise _bad(f"{t.name}: {attr.name} is not UTF-8") from None
    return raw


class _View:
    """Typed access to the decoded attributes of one message."""

    def __init__(self, attrs: dict[Attr, list[int | bytes | str]]) -> None:
        self.attrs = attrs

    def has(self, attr: Attr) -> bool:
        return attr in self.attrs

    def num(self, attr: Attr) -> int | None:
        v = self.attrs.get(attr)
        return v[0] if v and isinstance(v[0], int) else None

    def blob(self, attr: Attr) -> bytes:
        v = self.attrs.get(attr)
        return v[0] if v and isinstance(v[0], bytes) else b""

    def text(self, attr: Attr) -> str | None:
        v = self.attrs.get(attr)
        return v[0] if v and isinstance(v[0], str) else None

    def nums(self, attr: Attr) -> tuple[int, ...]:
        return tuple(x for x in self.attrs.get(attr, []) if isinstance(x, int))


def decode(record: bytes) -> Message:
    """The typed message in ``record``; :class:`CodecError` if it is not valid."""
    t, attrs = parse(record)
    a = _View(attrs)
    if t in (MsgType.HANDSHAKE, MsgType.START):
        return _request(t, a)
    if t in (MsgType.CRYPTO, MsgType.SEND_CRYPTO):
        level = _level(t, a.num(Attr.LEVEL))
        data = a.blob(Attr.DATA)
        if not data:
            raise _bad(f"{t.name}: empty DATA")
        flags = a.num(Attr.FLAGS) or 0
        if flags & ~FLAG_MORE:
            raise _bad(f"{t.name}: unknown FLAGS bits 0x{flags & ~FLAG_MORE:x}")
        out = t is MsgType.SEND_CRYPTO
        return Crypto(level, data, more=bool(flags & FLAG_MORE), outgoing=out)
    if t in (MsgType.OPTION, MsgType.SET_SOCKOPT):
        opt = a.num(Attr.OPTION)
        assert opt is not None
        if t is MsgType.OPTION and opt not in UPDATABLE_OPTIONS:
            raise _bad(f"OPTION: option {opt} cannot be updated by the client")
        return Option(opt, a.blob(Attr.VALUE), outgoing=t is MsgType.SET_SOCKOPT)
    if t is MsgType.CLOSED:
        return Closed(a.blob(Attr.VALUE) if a.has(Attr.VALUE) else None)
    if t is MsgType.OP_ERROR:
        return OpError(_status(t, a.num(Attr.STATUS)), a.text(Attr.ERROR) or "")
    if t is MsgType.RESULT:
        return Result(
            status=_status(t, a.num(Attr.STATUS), allow_zero=True),
            alpn=a.blob(Attr.ALPN) if a.has(Attr.ALPN) else None,
            cipher=a.num(Attr.CIPHER),
            group=a.text(Attr.GROUP),
            resumed=bool(a.num(Attr.RESUMED)),
            early_data=bool(a.num(Attr.EARLY_DATA)),
            error=a.text(Attr.ERROR),
            elapsed_us=a.num(Attr.ELAPSED_US) or 0,
        )
    return Error(_status(t, a.num(Attr.STATUS)), a.text(Attr.ERROR) or "", a.num(Attr.VERSION) or 0)


def _status(t: MsgType, v: int | None, *, allow_zero: bool = False) -> int:
    assert v is not None
    if v > 4095 or (v == 0 and not allow_zero):
        raise _bad(f"{t.name}: STATUS {v} is not a positive errno")
    return v


def _level(t: MsgType, v: int | None) -> uapi.CryptoLevel:
    assert v is not None
    if v not in (uapi.CryptoLevel.INITIAL, uapi.CryptoLevel.HANDSHAKE, uapi.CryptoLevel.APP):
        raise _bad(f"{t.name}: LEVEL {v} is not INITIAL(1), HANDSHAKE(2) or APP(0)")
    return uapi.CryptoLevel(v)


def _request(t: MsgType, a: _View) -> Request:
    role_n, auth_n = a.num(Attr.ROLE), a.num(Attr.AUTH)
    if role_n not in (uapi.MsgType.CLIENTHELLO, uapi.MsgType.SERVERHELLO):
        raise _bad(f"{t.name}: ROLE {role_n} is not 1 (client) or 2 (server)")
    if auth_n not in (uapi.AuthMode.UNAUTH, uapi.AuthMode.PSK, uapi.AuthMode.X509):
        raise _bad(f"{t.name}: AUTH {auth_n} is not 1 (unauth), 2 (psk) or 3 (x509)")
    timeout = a.num(Attr.TIMEOUT_MS)
    settings = None
    if t is MsgType.START:
        config = a.blob(Attr.CONFIG)
        if len(config) != uapi.CONFIG_SIZE:
            raise _bad(f"START: CONFIG has {len(config)} bytes, expected {uapi.CONFIG_SIZE}")
        alpn = a.blob(Attr.ALPN)
        try:
            uapi.parse_alpn_option(alpn)
        except ValueError as e:
            raise _bad(f"START: ALPN {alpn!r} is invalid: {e}") from None
        settings = SocketSettings(
            config, alpn, a.blob(Attr.SESSION_TICKET), a.blob(Attr.TRANSPORT_PARAM_EXT)
        )
    return Request(
        role=uapi.MsgType(role_n),
        auth=uapi.AuthMode(auth_n),
        peer_name=a.text(Attr.PEER_NAME) or None,
        timeout_ms=timeout or None,
        psk_serials=a.nums(Attr.PSK_SERIAL),
        cert_serial=a.num(Attr.CERT_SERIAL),
        privkey_serial=a.num(Attr.PRIVKEY_SERIAL),
        settings=settings,
    )
