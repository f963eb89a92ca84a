# SPDX-License-Identifier: GPL-2.0-or-later
"""fd handoff of a connected TCP socket: the unix service runs TLS 1.3 on it against a
real gnutls-serv and hands the client's own fd back ready for kTLS.

This host has no kTLS: with the recording installer the client then speaks records on
its own fd with exactly the crypto_info the daemon produced (gnutls-serv echoes them);
with the real installer the client gets EIO naming the missing TLS ULP.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
from pathlib import Path

import pytest
from tcp_peers import GnutlsServ
from test_unix_server import exchange, fd_count, sock_path, write_config
from tlsrecord import Recorder, read_record

from quichsd import uapi
from quichsd.config import load_config
from quichsd.credentials import load_credentials
from quichsd.service import HandshakeService
from quichsd.unix import codec
from quichsd.unix.server import UnixService

X509_TLS13 = "NORMAL:-VERS-ALL:+VERS-TLS1.3"


def x509_serv(d: Path) -> GnutlsServ:
    return GnutlsServ(
        d,
        priority=X509_TLS13,
        extra=("--x509certfile", str(d / "server.pem"), "--x509keyfile", str(d / "server.key")),
    )


async def start(cfg: Path, install: object = None) -> UnixService:
    settings = load_config(str(cfg))
    kw = {"ktls_install": install} if install is not None else {}
    svc = UnixService(HandshakeService(settings, load_credentials(settings), **kw))  # type: ignore[arg-type]
    await svc.start()
    return svc


def request(name: str = "server.test") -> bytes:
    return codec.encode(codec.Request(uapi.MsgType.CLIENTHELLO, uapi.AuthMode.X509, name, 3000))


async def test_tcp_socket_handed_over_comes_back_keyed_for_ktls(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "quichsd.unix")
    rec = Recorder()
    svc = await start(write_config(tmp_path, [os.getuid()]), rec)
    serv = x509_serv(tmp_path)
    base = fd_count()
    try:
        with serv.connect() as tcp:
            (reply,) = await exchange(sock_path(svc), request(), [tcp.fileno()])
            assert isinstance(reply, codec.Result) and reply.status == 0, reply
            assert reply.cipher in (int(c) for c in uapi.Cipher)
            tx, rx = rec.layers()
            tcp.setblocking(True)
            tcp.sendall(tx.seal(b"over the handed-back fd\n"))
            while True:  # gnutls-serv sends a NewSessionTicket first
                ctype, data = rx.open(read_record(tcp))
                if ctype == 23:
                    break
            assert data == b"over the handed-back fd\n"
    finally:
        await svc.stop(timeout=2)
        serv.stop()
    assert fd_count() <= base
    assert "(CLIENTHELLO, X509, fd handoff) done: status 0 OK" in caplog.text


async def test_tcp_handoff_wrong_server_name_is_eacces_with_the_reason(tmp_path: Path) -> None:
    svc = await start(write_config(tmp_path, [os.getuid()]), Recorder())
    serv = x509_serv(tmp_path)
    try:
        with serv.connect() as tcp:
            (reply,) = await exchange(sock_path(svc), request("other.test"), [tcp.fileno()])
            await asyncio.sleep(0.5)  # gnutls-serv logs the alert it got
    finally:
        await svc.stop(timeout=2)
        out = serv.stop()
    assert isinstance(reply, codec.Result) and reply.status == errno.EACCES
    assert reply.error is not None and "peer certificate rejected" in reply.error
    assert "A TLS fatal alert has been received" in out or "Bad certificate" in out, out


async def test_tcp_handoff_on_a_kernel_without_ktls_is_eio(tmp_path: Path) -> None:
    with (
        socket.create_server(("127.0.0.1", 0)) as ls,
        socket.create_connection(ls.getsockname()) as probe,
    ):
        try:
            probe.setsockopt(socket.IPPROTO_TCP, 31, b"tls")
        except OSError:
            pass
        else:
            pytest.skip("this host's kernel has kTLS: the VM tier covers the real install")
    svc = await start(write_config(tmp_path, [os.getuid()]))
    serv = x509_serv(tmp_path)
    try:
        with serv.connect() as tcp:
            (reply,) = await exchange(sock_path(svc), request(), [tcp.fileno()])
    finally:
        await svc.stop(timeout=2)
        serv.stop()
    assert isinstance(reply, codec.Result) and reply.status == errno.EIO
    assert reply.error == (
        "kTLS set-up failed at TCP_ULP tls: the kernel has no TLS ULP (CONFIG_TLS, module tls)"
    )
