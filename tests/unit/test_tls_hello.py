# SPDX-License-Identifier: GPL-2.0-or-later
"""quichsd.tls.hello: PSK identities from a real GnuTLS ClientHello, malformed input."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

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
        head = await loop.sock_recv(srv, 5)
        length = int.from_bytes(head[3:5], "big")
        record = b""
        while len(record) < length:
            record += await loop.sock_recv(srv, length - len(record))
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
