"""The daemon's READY -> ACCEPT -> driver -> DONE flow with the kernel replaced only at the
netlink socket boundary (hand-built ACCEPT reply, DONE bytes asserted) and the QUIC socket
being the aioquic-backed userspace one, handshaking with ngtcp2's gtlsserver over UDP."""

from __future__ import annotations

import asyncio
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest
from pki import make_pki
from test_nlagent import READY, FakeKernel, done_sent, fd_count, fd_open, nlmsg, s32, u32, until

from quichsd.config import parse_config
from quichsd.credentials import load_credentials
from quichsd.netlink import HandshakeAgent
from quichsd.service import HandshakeService
from quichsd.userspace.aioquic import UserspaceQuicSocket

pytestmark = pytest.mark.peer


def x509_client_reply(fd: int, seq: int, peername: bytes) -> bytes:
    """ACCEPT reply in the kernel's order (§1.5): sockfd, message type, peername, timeout,
    auth mode."""
    name = peername + b"\0"
    pad = (-len(name)) % 4
    attrs = s32(1, fd) + u32(3, 1)
    attrs += struct.pack("=HH", 4 + len(name), 8) + name + b"\0" * pad
    attrs += u32(4, 5000) + u32(5, 3)
    return nlmsg(2, attrs, seq=seq, pid=4242)


async def test_ready_accept_handshake_done_against_gtlsserver(tmp_path: Path) -> None:
    pki = make_pki()
    pki.write(tmp_path)
    (tmp_path / "htdocs").mkdir()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [
            "/usr/sbin/gtlsserver",
            "127.0.0.1",
            str(port),
            str(tmp_path / "server.key"),
            str(tmp_path / "server.pem"),
            "-d",
            str(tmp_path / "htdocs"),
            "-q",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.3)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"client:\n  x509:\n    truststore: {tmp_path / 'ca.pem'}\n")
    settings = parse_config(cfg.read_text(), str(cfg))

    async def over_aioquic(sock: socket.socket) -> UserspaceQuicSocket:
        # the consumer's socket settings (ALPN) as a kernel consumer would have set them
        host, p = sock.getpeername()
        return await UserspaceQuicSocket.connect(host, p, alpns=[b"h3"], server_name="server.test")

    service = HandshakeService(settings, load_credentials(settings), socket_adapter=over_aioquic)
    kernel = FakeKernel()
    agent = HandshakeAgent(kernel, service.handle, quic_protocol=socket.IPPROTO_UDP)
    base = fd_count()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.connect(("127.0.0.1", port))
    fd = udp.detach()
    kernel.pending.append(lambda seq: x509_client_reply(fd, seq, b"server.test"))
    try:
        await agent.start()
        kernel.mcast.put_nowait([READY])
        await until(lambda: len(kernel.dones()) == 1, timeout=20)
        await agent.stop(timeout=2)
    finally:
        server.terminate()
        server.wait(timeout=10)
    done = kernel.dones()[0]
    assert done == done_sent(kernel.seq_of(done), 0, fd), done.hex()
    assert not fd_open(fd)
    await asyncio.sleep(0.1)
    assert fd_count() == base
