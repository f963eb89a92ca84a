# SPDX-License-Identifier: GPL-2.0-or-later
"""quichsd.tls.hello: PSK identities from a real GnuTLS ClientHello, malformed input."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quichsd.request import HandshakeRequest
from quichsd.tcpdriver import run_tcp_handshake
from quichsd.tls.config import Auth, Role
from quichsd.tls.hello import EXT_PRE_SHARED_KEY, HelloError, extensions, psk_identities


async def client_hello(identity: str, key_len: int = 32) -> bytes:
    """The ClientHello body our TCP client sends (read raw from the listening side)."""
    with socket.create_server(("127.0.0.1", 0)) as ls:
        c = socket.create_connection(ls.getsockname())
        srv, _ = ls.accept()
        req = HandshakeRequest(
            role=Role.CLIENT,
            auth=Auth.PSK,
            psk_identity=identity,
            psk_key=os.urandom(key_len),
            timeout=0.5,
        )
        task = asyncio.create_task(run_tcp_handshake(c, req, lambda *a: None))
        loop = asyncio.get_running_loop()
        srv.setblocking(False)

        async def read(n: int) -> bytes:
            # bounded: a client that fails before its ClientHello must fail the test, not
            # hang it (its result says why)
            try:
                return await asyncio.wait_for(loop.sock_recv(srv, n), 10)
            except TimeoutError:
                done = task.result() if task.done() else "still running"
                raise AssertionError(f"no ClientHello within 10 s; the client: {done}") from None

        head = await read(5)
        length = int.from_bytes(head[3:5], "big")
        record = b""
        while len(record) < length:
            record += await read(length - len(record))
        srv.close()
        await task
        c.close()
    assert head[0] == 22 and record[0] == 1  # handshake record, ClientHello
    return record[4:]


async def test_identity_of_a_real_client_hello() -> None:
    ident = "NVMe1R02 nqn.2014-08.org.example:host nqn.2014-08.org.example:sub"
    body = await client_hello(ident, 48)
    assert psk_identities(body) == [ident.encode()]
    assert EXT_PRE_SHARED_KEY in extensions(body)


def test_no_psk_extension_gives_no_identity() -> None:
    body = b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00" + b"\x00\x00"
    assert psk_identities(body) == []


@pytest.mark.parametrize("cut", [10, 34, 36, 40])
def test_truncated_hello_is_refused(cut: int) -> None:
    body = b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00" + b"\x00\x00"
    with pytest.raises(HelloError, match="ClientHello truncated"):
        psk_identities(body[:cut])


def test_psk_extension_with_two_identities() -> None:
    ids = b"".join(len(i).to_bytes(2, "big") + i + b"\0\0\0\0" for i in (b"a", b"bc"))
    psk = len(ids).to_bytes(2, "big") + ids + b"\x00\x00"
    ext = EXT_PRE_SHARED_KEY.to_bytes(2, "big") + len(psk).to_bytes(2, "big") + psk
    body = b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x02\x13\x02" + b"\x01\x00"
    body += len(ext).to_bytes(2, "big") + ext
    assert psk_identities(body) == [b"a", b"bc"]


def test_record_size_limit_values() -> None:
    from quichsd.tls.hello import EXT_RECORD_SIZE_LIMIT, record_size_limit

    assert record_size_limit({}) is None
    assert record_size_limit({EXT_RECORD_SIZE_LIMIT: b"\x02\x00"}) == 512
    with pytest.raises(HelloError, match="below 64"):
        record_size_limit({EXT_RECORD_SIZE_LIMIT: b"\x00\x10"})
    with pytest.raises(HelloError, match="of 3 bytes"):
        record_size_limit({EXT_RECORD_SIZE_LIMIT: b"\x00\x10\x00"})


async def test_our_client_hello_advertises_a_record_size_limit() -> None:
    from quichsd.tls.hello import record_size_limit

    assert record_size_limit(extensions(await client_hello("x"))) == 16385


def _reference_offers_tls13(body: bytes) -> bool:
    """offers_tls13 as it was written first: the general parser, then every version."""
    from quichsd.tls.hello import EXT_SUPPORTED_VERSIONS

    data = extensions(body).get(EXT_SUPPORTED_VERSIONS)
    if data is None:
        return False
    if len(data) < 1 or 1 + data[0] > len(data):
        raise HelloError("truncated")
    versions = data[1 : 1 + data[0]]
    return any(versions[i : i + 2] == b"\x03\x04" for i in range(0, len(versions), 2))


def _hello(exts: list[tuple[int, bytes]], session_id: bytes = b"", skew: int = 0) -> bytes:
    """A ClientHello body; ``skew`` is added to the extensions vector's declared length."""
    raw = b"".join(t.to_bytes(2, "big") + len(d).to_bytes(2, "big") + d for t, d in exts)
    head = b"\x03\x03" + bytes(32) + bytes([len(session_id)]) + session_id
    size = max(0, len(raw) + skew).to_bytes(2, "big")
    return head + b"\x00\x02\x13\x01" + b"\x01\x00" + size + raw


_EXT_TYPES = st.sampled_from([0, 10, 13, 28, 41, 43, 51, 57, 0xFFFF])
_VERSIONS = st.lists(st.sampled_from([b"\x03\x04", b"\x03\x03", b"\x7f\x1c", b"\x04", b"\x03"]))


@st.composite
def _client_hellos(draw: st.DrawFn) -> bytes:
    exts = draw(st.lists(st.tuples(_EXT_TYPES, st.binary(max_size=8)), max_size=6))
    if draw(st.booleans()):
        v = b"".join(draw(_VERSIONS))
        exts.insert(draw(st.integers(0, len(exts))), (43, bytes([len(v)]) + v))
    skew = draw(st.integers(-6, 6)) if draw(st.booleans()) else 0
    body = _hello(exts, draw(st.binary(max_size=4)), skew) + draw(st.binary(max_size=6))
    if draw(st.booleans()):  # truncate, or flip one byte
        body = body[: draw(st.integers(0, len(body)))]
    elif body and draw(st.booleans()):
        i = draw(st.integers(0, len(body) - 1))
        body = body[:i] + bytes([draw(st.integers(0, 255))]) + body[i + 1 :]
    return body


@settings(max_examples=500, deadline=None)
@given(_client_hellos())
def test_offers_tls13_agrees_with_the_general_parser(body: bytes) -> None:
    """The index-based scan of the pre-ClientHello hook (issue 15) decides as the dict
    parser does, and refuses (HelloError) exactly the hellos that one refuses."""
    from quichsd.tls.hello import offers_tls13

    try:
        expected: bool | None = _reference_offers_tls13(body)
    except HelloError:
        expected = None
    try:
        got: bool | None = offers_tls13(body)
    except HelloError:
        got = None
    assert got == expected


async def test_real_client_hello_offers_tls13() -> None:
    from quichsd.tls.hello import no_tls13_reason, offers_tls13

    body = await client_hello("x")
    assert offers_tls13(body) and no_tls13_reason(body) is None
    assert no_tls13_reason(_hello([(43, b"\x02\x03\x03")])) is not None
