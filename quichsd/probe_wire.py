# SPDX-License-Identifier: GPL-2.0-or-later
"""Decoding what ``quichsd-probe -v`` shows: TLS handshake messages and QUIC transport
parameters, from the bytes that crossed the socket (pure, no I/O).

Handshake messages (RFC 8446 §4) are decoded only as far as the report needs: the
ClientHello's suites, groups and key shares, the ServerHello's suite, version and group
(and whether it is a HelloRetryRequest, §4.1.3), EncryptedExtensions' early_data, and the
Certificate message's chain. Transport parameters follow RFC 9000 §18.2. Malformed input
raises :class:`WireError`; callers show what they could decode.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass, field

#: RFC 8446 §4.1.3: a ServerHello with this random is a HelloRetryRequest
HRR_RANDOM = hashlib.sha256(b"HelloRetryRequest").digest()

CLIENT_HELLO, SERVER_HELLO, NEW_SESSION_TICKET, ENCRYPTED_EXTENSIONS, CERTIFICATE = 1, 2, 4, 8, 11
EXT_SERVER_NAME, EXT_GROUPS, EXT_ALPN, EXT_PSK, EXT_EARLY_DATA = 0, 10, 16, 41, 42
EXT_VERSIONS, EXT_KEY_SHARE = 43, 51

SUITES = {
    0x1301: "TLS_AES_128_GCM_SHA256",
    0x1302: "TLS_AES_256_GCM_SHA384",
    0x1303: "TLS_CHACHA20_POLY1305_SHA256",
    0x1304: "TLS_AES_128_CCM_SHA256",
    0x1305: "TLS_AES_128_CCM_8_SHA256",
}
GROUPS = {
    0x0017: "SECP256R1",
    0x0018: "SECP384R1",
    0x0019: "SECP521R1",
    0x001D: "X25519",
    0x001E: "X448",
    0x0100: "FFDHE2048",
    0x0101: "FFDHE3072",
    0x0102: "FFDHE4096",
    0x0103: "FFDHE6144",
    0x0104: "FFDHE8192",
    0x11EC: "X25519-MLKEM768",
    0x11EB: "SECP256R1-MLKEM768",
    0x11ED: "SECP384R1-MLKEM1024",
    0x6399: "X25519-KYBER768",
}


class WireError(ValueError):
    pass


def suite_name(n: int) -> str:
    return SUITES.get(n, f"0x{n:04x}")


def group_name(n: int) -> str:
    return GROUPS.get(n, f"0x{n:04x}")


def _vec(buf: bytes, pos: int, lenbytes: int) -> tuple[bytes, int]:
    if pos + lenbytes > len(buf):
        raise WireError("truncated length")
    n = int.from_bytes(buf[pos : pos + lenbytes], "big")
    start = pos + lenbytes
    if start + n > len(buf):
        raise WireError("vector overruns its message")
    return buf[start : start + n], start + n


def _u16s(block: bytes) -> list[int]:
    return [int.from_bytes(block[i : i + 2], "big") for i in range(0, len(block) - 1, 2)]


def extensions(block: bytes) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    i = 0
    while i < len(block):
        if i + 2 > len(block):
            raise WireError("truncated extension type")
        etype = int.from_bytes(block[i : i + 2], "big")
        out[etype], i = _vec(block, i + 2, 2)
    return out


class MessageReader:
    """Splits one direction's handshake bytes at one level into whole messages."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buf += data
        out = []
        while len(self._buf) >= 4:
            n = int.from_bytes(self._buf[1:4], "big")
            if len(self._buf) < 4 + n:
                break
            out.append((self._buf[0], bytes(self._buf[4 : 4 + n])))
            del self._buf[: 4 + n]
        return out


@dataclass
class ClientHelloInfo:
    suites: list[int]
    groups: list[int]
    key_shares: list[int]
    server_name: str | None
    alpns: list[bytes]
    psk: bool
    early_data: bool


def client_hello(body: bytes) -> ClientHelloInfo:
    pos = 2 + 32
    _sid, pos = _vec(body, pos, 1)
    suites, pos = _vec(body, pos, 2)
    _comp, pos = _vec(body, pos, 1)
    exts_block, _ = _vec(body, pos, 2)
    exts = extensions(exts_block)
    groups = _u16s(_vec(exts[EXT_GROUPS], 0, 2)[0]) if EXT_GROUPS in exts else []
    shares = []
    if EXT_KEY_SHARE in exts:
        block, _ = _vec(exts[EXT_KEY_SHARE], 0, 2)
        i = 0
        while i < len(block):
            shares.append(int.from_bytes(block[i : i + 2], "big"))
            _key, i = _vec(block, i + 2, 2)
    name = None
    if EXT_SERVER_NAME in exts:
        names, _ = _vec(exts[EXT_SERVER_NAME], 0, 2)
        if names and names[0] == 0:
            name = _vec(names, 1, 2)[0].decode(errors="replace")
    return ClientHelloInfo(
        suites=_u16s(suites),
        groups=groups,
        key_shares=shares,
        server_name=name,
        alpns=_alpns(exts.get(EXT_ALPN)),
        psk=EXT_PSK in exts,
        early_data=EXT_EARLY_DATA in exts,
    )


def _alpns(ext: bytes | None) -> list[bytes]:
    if ext is None:
        return []
    block, _ = _vec(ext, 0, 2)
    out, i = [], 0
    while i < len(block):
        name, i = _vec(block, i, 1)
        out.append(name)
    return out


@dataclass
class ServerHelloInfo:
    retry: bool  # a HelloRetryRequest
    suite: int
    version: int | None
    group: int | None
    psk: bool


def server_hello(body: bytes) -> ServerHelloInfo:
    random = body[2:34]
    pos = 34
    _sid, pos = _vec(body, pos, 1)
    suite = int.from_bytes(body[pos : pos + 2], "big")
    exts_block, _ = _vec(body, pos + 3, 2)
    exts = extensions(exts_block)
    version = int.from_bytes(exts[EXT_VERSIONS], "big") if EXT_VERSIONS in exts else None
    ks = exts.get(EXT_KEY_SHARE)
    group = int.from_bytes(ks[:2], "big") if ks and len(ks) >= 2 else None
    return ServerHelloInfo(random == HRR_RANDOM, suite, version, group, EXT_PSK in exts)


def encrypted_extensions(body: bytes) -> dict[int, bytes]:
    return extensions(_vec(body, 0, 2)[0])


def certificate_chain(body: bytes) -> list[bytes]:
    """The DER certificates of a TLS 1.3 Certificate message, leaf first."""
    _ctx, pos = _vec(body, 0, 1)
    if pos + 3 > len(body):
        raise WireError("truncated certificate_list")
    block, _ = _vec(body, pos, 3)
    out, i = [], 0
    while i < len(block):
        der, i = _vec(block, i, 3)
        _exts, i = _vec(block, i, 2)
        out.append(der)
    return out


# -- QUIC transport parameters (RFC 9000 §18.2; RFC 9221; RFC 9287) -------------------------
TP_NAMES = {
    0x00: "original_destination_connection_id",
    0x01: "max_idle_timeout",
    0x02: "stateless_reset_token",
    0x03: "max_udp_payload_size",
    0x04: "initial_max_data",
    0x05: "initial_max_stream_data_bidi_local",
    0x06: "initial_max_stream_data_bidi_remote",
    0x07: "initial_max_stream_data_uni",
    0x08: "initial_max_streams_bidi",
    0x09: "initial_max_streams_uni",
    0x0A: "ack_delay_exponent",
    0x0B: "max_ack_delay",
    0x0C: "disable_active_migration",
    0x0D: "preferred_address",
    0x0E: "active_connection_id_limit",
    0x0F: "initial_source_connection_id",
    0x10: "retry_source_connection_id",
    0x11: "version_information",
    0x20: "max_datagram_frame_size",
    0x2AB2: "grease_quic_bit",
}
_TP_BYTES = {0x00, 0x02, 0x0F, 0x10}
_TP_FLAGS = {0x0C, 0x2AB2}
_TP_UNITS = {0x01: " ms", 0x0B: " ms"}


def varint(buf: bytes, pos: int) -> tuple[int, int]:
    """A QUIC variable-length integer (RFC 9000 §16) at ``pos``; (value, next pos)."""
    if pos >= len(buf):
        raise WireError("truncated varint")
    n = 1 << (buf[pos] >> 6)
    if pos + n > len(buf):
        raise WireError("truncated varint")
    value = int.from_bytes(buf[pos : pos + n], "big") & ((1 << (8 * n - 2)) - 1)
    return value, pos + n


@dataclass
class TransportParam:
    id: int
    name: str
    value: str


@dataclass
class TransportParams:
    params: list[TransportParam] = field(default_factory=list)
    error: str | None = None


def transport_parameters(data: bytes) -> TransportParams:
    """Every parameter of a transport-parameters extension body, decoded for display."""
    out = TransportParams()
    pos = 0
    try:
        while pos < len(data):
            pid, pos = varint(data, pos)
            length, pos = varint(data, pos)
            if pos + length > len(data):
                raise WireError(f"parameter 0x{pid:x} overruns the extension")
            raw = data[pos : pos + length]
            pos += length
            out.params.append(TransportParam(pid, _tp_name(pid), _tp_value(pid, raw)))
    except WireError as e:
        out.error = str(e)
    return out


def _tp_name(pid: int) -> str:
    if pid in TP_NAMES:
        return TP_NAMES[pid]
    if pid % 31 == 27:
        return f"reserved (grease 0x{pid:x})"
    return f"unknown 0x{pid:x}"


def _tp_value(pid: int, raw: bytes) -> str:
    if pid in _TP_FLAGS:
        return "yes" if not raw else f"(unexpected value {raw.hex()})"
    if pid in _TP_BYTES or pid not in TP_NAMES:
        return raw.hex() or "(empty)"
    if pid == 0x0D:
        return _preferred_address(raw)
    if pid == 0x11:
        versions = [raw[i : i + 4].hex() for i in range(0, len(raw) - 3, 4)]
        return (
            "chosen "
            + (versions[0] if versions else "?")
            + ", available "
            + ", ".join(versions[1:])
        )
    value, end = varint(raw, 0)
    if end != len(raw):
        raise WireError(f"parameter 0x{pid:x}: trailing bytes after its varint")
    return f"{value}{_TP_UNITS.get(pid, '')}"


def _preferred_address(raw: bytes) -> str:
    if len(raw) < 4 + 2 + 16 + 2 + 1:
        raise WireError("preferred_address too short")
    v4 = ipaddress.IPv4Address(raw[0:4])
    p4 = int.from_bytes(raw[4:6], "big")
    v6 = ipaddress.IPv6Address(raw[6:22])
    p6 = int.from_bytes(raw[22:24], "big")
    cid, _ = _vec(raw, 24, 1)
    return f"{v4}:{p4} [{v6}]:{p6} cid {cid.hex()}"
