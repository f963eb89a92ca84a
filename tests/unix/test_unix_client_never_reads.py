# SPDX-License-Identifier: GPL-2.0-or-later
"""A socket-ops client that never reads what the daemon sends (fault catalogue 2.8): the
handshake ends by itself at its deadline, the daemon answers exactly once, frees every fd
and keeps serving.

The unix service runs in-process with a real HandshakeService; the client is a plain
SOCK_SEQPACKET socket that sends its records and then does not call recv.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from test_unix_server import CONFIG, exchange, fd_count, start_service, write_config

from quichsd import uapi
from quichsd.unix import codec
from quichsd.unix.server import UnixService

LOGGER = "quichsd.unix"


@pytest.fixture
async def unix(tmp_path: Path) -> AsyncIterator[UnixService]:
    svc = await start_service(write_config(tmp_path, [os.getuid()]))
    yield svc
    await svc.stop(timeout=2)


def completion(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == LOGGER and r.getMessage().startswith("unix handshake for ")
    ]


async def wait_for_completion(caplog: pytest.LogCaptureFixture, limit: float) -> float:
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    while not completion(caplog):
        assert loop.time() - t0 < limit, "no completion line"
        await asyncio.sleep(0.02)
    return loop.time() - t0


def queued_records(c: socket.socket) -> list[codec.Message]:
    """What the daemon left in the client's queue, read after the fact (EOF ends it)."""
    out = []
    while True:
        data = c.recv(70000)
        if not data:
            return out
        out.append(codec.decode(data))


async def test_client_that_never_reads_ends_at_the_handshake_deadline(
    unix: UnixService, caplog: pytest.LogCaptureFixture
) -> None:
    """The daemon as TLS client: START, then silence and no reads. The handshake ends at its
    1 s deadline (not at the 5 s grace after it), the client's queue holds the ClientHello
    and exactly one RESULT ETIMEDOUT, then EOF; fds are back and the service still serves."""
    base = fd_count()
    c = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        c.connect(unix.path or "")
        start = codec.encode(
            codec.Request(
                uapi.MsgType.CLIENTHELLO,
                uapi.AuthMode.X509,
                "server.test",
                1000,
                settings=codec.SocketSettings(CONFIG, b"h3"),
            )
        )
        with caplog.at_level(logging.INFO, LOGGER):
            c.send(start)
            took = await wait_for_completion(caplog, 4)
        assert 1.0 <= took < 2.5, took
        assert completion(caplog) == [
            f"unix handshake for pid {os.getpid()} uid {os.getuid()} gid {os.getgid()} "
            "(CLIENTHELLO, X509, socket-ops) done: status 110 ETIMEDOUT "
            "(deadline of 1 s passed while waiting for ServerHello)"
        ]
        await asyncio.sleep(0.05)
        assert not unix._tasks
        msgs = queued_records(c)
    finally:
        c.close()
    assert isinstance(msgs[0], codec.Crypto) and msgs[0].level is uapi.CryptoLevel.INITIAL
    results = [m for m in msgs if isinstance(m, codec.Result | codec.Error)]
    assert len(results) == 1 and isinstance(results[-1], codec.Result), msgs
    assert results[0].status == errno.ETIMEDOUT and msgs[-1] is results[0]
    assert fd_count() == base
    (again,) = await exchange(unix.path or "", b"\x01")  # still serving
    assert isinstance(again, codec.Error) and again.status == errno.EBADMSG
