# SPDX-License-Identifier: GPL-2.0-or-later
"""PSK client requests the daemon cannot serve (fault catalogue 2.1): no peer identity at
all, and a key serial this machine's real kernel keyring refuses to read (revoked with
``keyctl revoke``, expired with ``keyctl timeout``).

The kernel is replaced only at the netlink socket (``FakeKernel``: hand-built ACCEPT reply,
DONE bytes written from the spec); the service, the agent and the keyring are the real
ones. Each request gets exactly one DONE with the status the kernel documentation gives
(ENOKEY without a serial; EIO, as tlshd, for an unreadable key), one completion line
naming the serial and the keyring's errno, and its fd closed; nothing reaches the socket.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import subprocess
import time

import pytest
from test_nlagent import (
    LOGGER,
    READY,
    FakeKernel,
    completion_lines,
    done_sent,
    fd_count,
    fd_open,
    psk_reply,
    udp_fd,
    until,
)

from quichsd import keyring as kr
from quichsd.config import parse_config
from quichsd.credentials import load_credentials
from quichsd.netlink import HandshakeAgent
from quichsd.service import ClosableQuicSocket, HandshakeService

pytestmark = pytest.mark.keyring


async def no_socket_use(sock: socket.socket) -> ClosableQuicSocket:
    raise AssertionError("the request must fail before its socket is used")


async def one_request(
    reply_peer_ids: tuple[int, ...], caplog: pytest.LogCaptureFixture
) -> tuple[bytes, int, int, list[str]]:
    """One PSK CLIENTHELLO request with ``reply_peer_ids`` through the real agent and
    service: (the DONE sent, its seq, the fd, the completion lines)."""
    settings = parse_config("", "config.yaml")
    service = HandshakeService(settings, load_credentials(settings), socket_adapter=no_socket_use)
    kernel = FakeKernel()
    agent = HandshakeAgent(kernel, service.handle, quic_protocol=socket.IPPROTO_UDP)
    fd = udp_fd()
    kernel.pending.append(lambda seq: psk_reply(fd, seq, reply_peer_ids))
    caplog.set_level(logging.INFO, logger=LOGGER)
    await agent.start()
    try:
        kernel.mcast.put_nowait([READY])
        await until(lambda: len(kernel.dones()) == 1)
        await asyncio.sleep(0.05)  # a second DONE would show up here
    finally:
        await agent.stop(timeout=2)
    assert len(kernel.dones()) == 1, kernel.dones()
    done = kernel.dones()[0]
    return done, kernel.seq_of(done), fd, completion_lines(caplog)


async def test_psk_request_without_peer_identity_is_enokey(
    caplog: pytest.LogCaptureFixture,
) -> None:
    base = fd_count()
    done, seq, fd, lines = await one_request((), caplog)
    assert done == done_sent(seq, errno.ENOKEY, fd), done.hex()
    assert lines == [
        "handshake for 127.0.0.1:4420 (CLIENTHELLO, PSK) done: status 126 ENOKEY "
        "(PSK client request carries no key serial)"
    ]
    assert not fd_open(fd)
    assert fd_count() == base


def _revoke(serial: int) -> None:
    subprocess.run(["keyctl", "revoke", str(serial)], check=True, capture_output=True)


def _expire(serial: int) -> None:
    subprocess.run(["keyctl", "timeout", str(serial), "1"], check=True, capture_output=True)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            kr.read_key(serial)
        except kr.KeyringError as exc:
            assert exc.errno == errno.EKEYEXPIRED, exc
            return
        time.sleep(0.05)
    raise AssertionError(f"key {serial} did not expire")


@pytest.mark.parametrize(
    ("spoil", "errno_name"), [(_revoke, "EKEYREVOKED"), (_expire, "EKEYEXPIRED")]
)
async def test_psk_key_serial_revoked_or_expired_is_eio_naming_serial_and_errno(
    caplog: pytest.LogCaptureFixture, spoil: object, errno_name: str
) -> None:
    kr.join_session_keyring(None)  # an anonymous session keyring for this test
    serial = kr.add_key("user", "quichsd-test;client-one", b"k" * 32, kr.KEY_SPEC_SESSION_KEYRING)
    assert kr.psk_identity(serial) == "client-one" and kr.read_key(serial) == b"k" * 32
    spoil(serial)  # type: ignore[operator]
    base = fd_count()
    done, seq, fd, lines = await one_request((serial,), caplog)
    assert done == done_sent(seq, errno.EIO, fd), done.hex()
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith(
        "handshake for 127.0.0.1:4420 (CLIENTHELLO, PSK) done: status 5 EIO ("
    ), line
    assert f"PSK key serial {serial}: " in line and f"({errno_name})" in line, line
    assert "k" * 32 not in caplog.text
    assert not fd_open(fd)
    assert fd_count() == base
