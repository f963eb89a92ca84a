# SPDX-License-Identifier: GPL-2.0-or-later
"""The kernel's TIMEOUT attribute (fault catalogue 2.1): absent, the handshake gets
``handshake.default_timeout_ms``; huge (2^32-1 ms, about 49 days), it is capped at
``handshake.max_timeout_ms``. Through the real agent and service, against a UDP port that
never answers: DONE ETIMEDOUT at the deadline the settings give."""

from __future__ import annotations

import errno
import logging
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pki import make_pki
from test_agent_flow import serve_one_request
from test_nlagent import LOGGER, completion_lines, done_sent, nlmsg, s32, u32

from quichsd.config import parse_config
from quichsd.userspace.aioquic import UserspaceQuicSocket

pytestmark = pytest.mark.peer


def x509_client_reply(fd: int, seq: int, timeout_ms: int | None) -> bytes:
    name = b"server.test\0"
    attrs = s32(1, fd) + u32(3, 1)
    attrs += struct.pack("=HH", 4 + len(name), 8) + name
    if timeout_ms is not None:
        attrs += u32(4, timeout_ms)
    return nlmsg(2, attrs + u32(5, 3), seq=seq, pid=4242)


@pytest.fixture
def silent_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as hole:
        hole.bind(("127.0.0.1", 0))
        yield hole.getsockname()[1]


@pytest.mark.parametrize(
    ("timeout_ms", "deadline"), [(None, "0.8 s"), (0xFFFFFFFF, "1.2 s")], ids=["absent", "huge"]
)
async def test_timeout_absent_gets_the_default_huge_gets_the_cap(
    tmp_path: Path,
    silent_port: int,
    caplog: pytest.LogCaptureFixture,
    timeout_ms: int | None,
    deadline: str,
) -> None:
    make_pki().write(tmp_path)
    text = (
        f"client:\n  x509:\n    truststore: {tmp_path / 'ca.pem'}\n"
        "handshake:\n  default_timeout_ms: 800\n  max_timeout_ms: 1200\n"
    )
    settings = parse_config(text, str(tmp_path / "config.yaml"))

    async def silent(sock: socket.socket) -> UserspaceQuicSocket:
        host, port = sock.getpeername()
        return await UserspaceQuicSocket.connect(host, port, alpns=[b"h3"])

    caplog.set_level(logging.INFO, logger=LOGGER)
    t0 = time.monotonic()
    done, seq, fd, _keys = await serve_one_request(
        settings, silent, silent_port, lambda fd, seq: x509_client_reply(fd, seq, timeout_ms)
    )
    took = time.monotonic() - t0
    assert done == done_sent(seq, errno.ETIMEDOUT, fd), done.hex()
    seconds = float(deadline.split()[0])
    assert seconds <= took < seconds + 1.5, took
    (line,) = completion_lines(caplog)
    assert f"(deadline of {deadline} passed while waiting for ServerHello)" in line, line
