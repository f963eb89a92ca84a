# SPDX-License-Identifier: GPL-2.0-or-later
"""The unix service in-process with a real HandshakeService: authz, malformed records,
fd handoff refusals, too many fds, a client leaving mid-handshake; fds back to baseline."""

from __future__ import annotations

import array
import asyncio
import errno
import logging
import os
import socket
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pki import make_pki

from quichsd import uapi
from quichsd.config import load_config
from quichsd.credentials import load_credentials
from quichsd.service import HandshakeService
from quichsd.unix import codec
from quichsd.unix.server import UnixService

CONFIG = uapi.pack_config(uapi.QuicConfig())


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def write_config(d: Path, allowed_uids: list[int]) -> Path:
    make_pki().write(d)
    cfg = d / "config.yaml"
    cfg.write_text(
        f"client:\n  x509:\n    truststore: {d / 'ca.pem'}\n"
        f"server:\n  x509:\n    certificate: {d / 'server.pem'}\n"
        f"    private_key: {d / 'server.key'}\n"
        f"unix_socket:\n  path: {d / 'run' / 'q.sock'}\n  allowed_uids: {allowed_uids}\n"
    )
    return cfg


async def start_service(cfg: Path) -> UnixService:
    settings = load_config(str(cfg))
    unix = UnixService(HandshakeService(settings, load_credentials(settings)))
    await unix.start()
    return unix


@pytest.fixture
async def unix(tmp_path: Path) -> AsyncIterator[UnixService]:
    svc = await start_service(write_config(tmp_path, [os.getuid()]))
    yield svc
    await svc.stop(timeout=2)


def sock_path(svc: UnixService) -> str:
    assert svc.path is not None
    return svc.path


async def exchange(
    path: str, record: bytes, fds: list[int] | None = None, *, read_all: bool = True
) -> list[codec.Message]:
    """Send one record, then read replies until the daemon closes the connection."""
    loop = asyncio.get_running_loop()
    c = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    c.setblocking(False)
    try:
        await loop.sock_connect(c, path)
        anc = []
        if fds:
            anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
        c.sendmsg([record], anc)
        out: list[codec.Message] = []
        while True:
            data = await asyncio.wait_for(loop.sock_recv(c, 70000), 10)
            if not data:
                return out
            out.append(codec.decode(data))
            if not read_all:
                return out
    finally:
        c.close()


def handshake_record(role: uapi.MsgType = uapi.MsgType.CLIENTHELLO) -> bytes:
    return codec.encode(codec.Request(role, uapi.AuthMode.X509, "server.test", 2000))


def start_record(role: uapi.MsgType = uapi.MsgType.CLIENTHELLO) -> bytes:
    settings = codec.SocketSettings(CONFIG, b"h3")
    return codec.encode(
        codec.Request(role, uapi.AuthMode.X509, "server.test", 2000, settings=settings)
    )


async def test_uid_not_allowed_is_refused_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    svc = await start_service(write_config(tmp_path, [os.getuid() + 4242]))
    try:
        with caplog.at_level(logging.WARNING, "quichsd.unix"):
            replies = await exchange(sock_path(svc), start_record())
        assert len(replies) == 1
        err = replies[0]
        assert isinstance(err, codec.Error) and err.status == errno.EACCES
        assert "allowed_uids" in err.text
        assert f"pid {os.getpid()} uid {os.getuid()}" in caplog.text
    finally:
        await svc.stop(timeout=2)


@pytest.mark.parametrize(
    ("record", "status", "words"),
    [
        (b"\xde\xad\xbe\xef garbage", errno.EPROTONOSUPPORT, "speaks version 1"),
        (handshake_record()[:-3], errno.EBADMSG, "claims"),
        (b"\x01\x02\x00\x01\x00\x01", errno.EBADMSG, "attribute 0 header truncated"),
        (b"\x01\x01\x00\x00" + b"\0" * 70000, errno.EMSGSIZE, "exceeds 65536"),
        (b"\x07" + handshake_record()[1:], errno.EPROTONOSUPPORT, "version 7"),
        (codec.encode(codec.Closed(None)), errno.EPROTO, "expected HANDSHAKE or START"),
        (start_record()[:1] + b"\x01" + start_record()[2:], errno.EBADMSG, "not allowed"),
    ],
)
async def test_malformed_request_gets_error_and_service_continues(
    unix: UnixService, record: bytes, status: int, words: str
) -> None:
    base = fd_count()
    replies = await exchange(sock_path(unix), record)
    assert len(replies) == 1, replies  # exactly one reply, then the daemon closed
    err = replies[0]
    assert isinstance(err, codec.Error) and err.status == status and err.version == 1
    assert words in err.text
    # the service keeps serving: the next connection gets its own answer
    again = await exchange(sock_path(unix), b"\x01")
    assert isinstance(again[0], codec.Error) and again[0].status == errno.EBADMSG
    assert fd_count() == base


async def test_handshake_without_fd_and_start_with_fd_are_refused(unix: UnixService) -> None:
    (r,) = await exchange(sock_path(unix), handshake_record())
    assert isinstance(r, codec.Error) and r.status == errno.EBADMSG
    base = fd_count()
    rd, wr = os.pipe()
    try:
        (r,) = await exchange(sock_path(unix), start_record(), [rd])
    finally:
        os.close(rd)
        os.close(wr)
    assert isinstance(r, codec.Error) and "START takes none" in r.text
    assert fd_count() == base  # the daemon's copy of the pipe end was closed


async def test_non_quic_fd_is_eopnotsupp_and_closed(
    unix: UnixService, caplog: pytest.LogCaptureFixture
) -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rd, wr = os.pipe()
    base = fd_count()
    try:
        with caplog.at_level(logging.INFO, "quichsd.unix"):
            (r1,) = await exchange(sock_path(unix), handshake_record(), [udp.fileno()])
            (r2,) = await exchange(sock_path(unix), handshake_record(), [rd])
        assert fd_count() == base  # the daemon's copies are closed
    finally:
        udp.close()
        os.close(rd)
        os.close(wr)
    assert isinstance(r1, codec.Result) and r1.status == errno.EOPNOTSUPP
    assert r1.error == "socket protocol 17 is neither QUIC (261) nor TCP (6)"
    assert isinstance(r2, codec.Result) and r2.status == errno.EOPNOTSUPP
    assert r2.error is not None and "not a socket" in r2.error
    assert "fd handoff) done: status 95 EOPNOTSUPP" in caplog.text


async def test_too_many_fds_closes_every_fd_that_arrived(unix: UnixService) -> None:
    pipes = [os.pipe() for _ in range(3)]
    base = fd_count()
    try:
        for n in (2, 3):  # 2 fit the control buffer (CMSG alignment); 3 give MSG_CTRUNC
            fds = [p[0] for p in pipes[:n]]
            (r,) = await exchange(sock_path(unix), handshake_record(), fds)
            assert isinstance(r, codec.Error) and r.status == errno.ETOOMANYREFS, r
            assert "HANDSHAKE takes exactly one" in r.text
            assert fd_count() == base
    finally:
        for a, b in pipes:
            os.close(a)
            os.close(b)


async def test_client_leaving_mid_handshake_is_cleaned_up(
    unix: UnixService, caplog: pytest.LogCaptureFixture
) -> None:
    loop = asyncio.get_running_loop()
    base = fd_count()
    c = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    c.setblocking(False)
    with caplog.at_level(logging.INFO, "quichsd.unix"):
        await loop.sock_connect(c, sock_path(unix))
        c.send(start_record())
        first = codec.decode(await asyncio.wait_for(loop.sock_recv(c, 70000), 5))
        # the daemon, as client, sends its ClientHello at the INITIAL level
        assert isinstance(first, codec.Crypto) and first.outgoing
        assert first.level is uapi.CryptoLevel.INITIAL and first.data[0] == 1
        c.close()
        t0 = loop.time()
        while "done: status" not in caplog.text and loop.time() - t0 < 3:
            await asyncio.sleep(0.02)
    assert "(CLIENTHELLO, X509, socket-ops) done: status 104 ECONNRESET" in caplog.text
    assert loop.time() - t0 < 1.5  # at once, not at the 2 s deadline
    assert not unix._tasks
    assert fd_count() == base


async def test_malformed_record_during_socket_ops(unix: UnixService) -> None:
    loop = asyncio.get_running_loop()
    c = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    c.setblocking(False)
    try:
        await loop.sock_connect(c, sock_path(unix))
        c.send(start_record(uapi.MsgType.SERVERHELLO))
        c.send(struct.pack(">BBH", 1, 3, 1) + b"\x00\x0c\x00\x01")  # CRYPTO, LEVEL cut
        replies = []
        while data := await asyncio.wait_for(loop.sock_recv(c, 70000), 5):
            replies.append(codec.decode(data))
    finally:
        c.close()
    assert len(replies) == 1
    err = replies[0]
    assert isinstance(err, codec.Error) and err.status == errno.EBADMSG
    assert "malformed socket-ops record" in err.text


async def test_stale_socket_is_replaced_and_live_one_refused(tmp_path: Path) -> None:
    from quichsd.unix import listen

    path = str(tmp_path / "run" / "s.sock")
    first = listen.bind(path)
    assert oct(os.stat(path).st_mode & 0o777) == "0o660"
    assert oct(os.stat(os.path.dirname(path)).st_mode & 0o777) == "0o750"
    with pytest.raises(listen.ListenError, match="another process is listening"):
        listen.bind(path)
    first.close()  # the file stays: stale
    listen.bind(path).close()
    os.unlink(path)
    Path(path).write_text("not a socket")
    with pytest.raises(listen.ListenError, match="exists and is not a socket"):
        listen.bind(path)


async def test_issue_11_item_15_internal_error_still_gets_one_reply(
    unix: UnixService, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """issue 11 item 15: a fault inside the daemon's handler still ends the request with
    exactly one reply (ERROR EIO), and the service keeps serving."""

    async def broken(*args: object) -> None:
        raise RuntimeError("injected fault")

    monkeypatch.setattr(unix.service, "handle_detailed", broken)
    base = fd_count()
    with caplog.at_level(logging.ERROR, "quichsd.unix"):
        replies = await exchange(sock_path(unix), start_record())
    assert len(replies) == 1, replies
    assert isinstance(replies[0], codec.Error) and replies[0].status == errno.EIO
    assert "connection handler failed" in caplog.text and "injected fault" in caplog.text
    again = await exchange(sock_path(unix), b"\x01")
    assert isinstance(again[0], codec.Error) and again[0].status == errno.EBADMSG
    assert fd_count() == base
    assert not unix._answered
