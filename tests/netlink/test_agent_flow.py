# SPDX-License-Identifier: GPL-2.0-or-later
"""The daemon's READY -> ACCEPT -> driver -> DONE flow with the kernel replaced only at the
netlink socket boundary (hand-built ACCEPT reply, DONE bytes asserted) and the QUIC socket
being the aioquic-backed userspace one, handshaking with ngtcp2's gtlsserver over UDP.

The server's certificate is RSA so that this machine's kernel can parse it: DONE's
REMOTE_AUTH is then the serial of the ``asymmetric`` key the daemon made of it (the host
kernel here has no ECDSA for x509 keys)."""

from __future__ import annotations

import asyncio
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pki import make_pki
from test_nlagent import READY, FakeKernel, done_sent, fd_count, fd_open, nlmsg, s32, u32, until

from quichsd import keyring as kr
from quichsd.config import Settings, parse_config
from quichsd.credentials import load_credentials
from quichsd.netlink import HandshakeAgent
from quichsd.service import HandshakeService, SocketAdapter
from quichsd.userspace.aioquic import UserspaceQuicSocket
from quichsd.userspace.server import UserspaceQuicServer

sys.path.insert(0, str(Path(__file__).parents[1] / "interop"))
from userspace_peers import gtlsclient  # noqa: E402

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


async def serve_one_request(
    settings: Settings,
    adapter: SocketAdapter,
    port: int,
    reply: Callable[[int, int], bytes],
) -> tuple[bytes, int, int, list[tuple[int, str]]]:
    """READY -> ACCEPT (answered with ``reply(fd, seq)``) -> handshake -> DONE through the
    real agent and service. The accepted fd is a UDP socket connected to 127.0.0.1:port.
    Returns the DONE bytes, their seq, the fd, and the peer keys made (serial, description)
    in a keyring of this test, removed afterwards."""
    peer_keys = kr.add_key("keyring", f"quichsd-peers-{port}", None, kr.KEY_SPEC_PROCESS_KEYRING)
    try:
        service = HandshakeService(
            settings,
            load_credentials(settings),
            socket_adapter=adapter,
            peer_key_keyring=peer_keys,
        )
        kernel = FakeKernel()
        agent = HandshakeAgent(kernel, service.handle, quic_protocol=socket.IPPROTO_UDP)
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.connect(("127.0.0.1", port))
        fd = udp.detach()
        kernel.pending.append(lambda seq: reply(fd, seq))
        await agent.start()
        kernel.mcast.put_nowait([READY])
        await until(lambda: len(kernel.dones()) == 1, timeout=20)
        await agent.stop(timeout=2)
        done = kernel.dones()[0]
        keys = [(k, kr.describe_key(k).description) for k in kr.keyring_members(peer_keys)]
        return done, kernel.seq_of(done), fd, keys
    finally:
        kr.invalidate(peer_keys)


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
            str(tmp_path / "server_rsa.key"),
            str(tmp_path / "server_rsa.pem"),
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

    base = fd_count()
    try:
        done, seq, fd, keys = await serve_one_request(
            settings,
            over_aioquic,
            port,
            lambda fd, seq: x509_client_reply(fd, seq, b"server.test"),
        )
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert [d for _, d in keys] == ["TLS x509 server.test"]
    assert done == done_sent(seq, 0, fd, (keys[0][0],)), done.hex()
    assert not fd_open(fd)
    await asyncio.sleep(0.1)
    assert fd_count() == base


def x509_server_reply(fd: int, seq: int) -> bytes:
    """ACCEPT reply for a SERVERHELLO request: sockfd, message type, timeout, auth mode."""
    attrs = s32(1, fd) + u32(3, 2) + u32(4, 5000) + u32(5, 3)
    return nlmsg(2, attrs, seq=seq, pid=4242)


async def test_server_reports_the_client_certificate_as_remote_auth(tmp_path: Path) -> None:
    """SERVERHELLO with a required client certificate: gtlsclient presents an RSA client
    certificate; DONE's REMOTE_AUTH is the serial of the key made of it, named after the
    client's address (tlshd sends 0xffffffff placeholders here)."""
    pki = make_pki()
    pki.write(tmp_path)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        "server:\n"
        "  x509:\n"
        f"    certificate: {tmp_path / 'server.pem'}\n"
        f"    private_key: {tmp_path / 'server.key'}\n"
        f"    truststore: {tmp_path / 'ca.pem'}\n"
        "  client_certificate: require\n"
    )
    settings = parse_config(cfg.read_text(), str(cfg))
    listener = await UserspaceQuicServer.listen("127.0.0.1", 0, alpns=[b"h3"])
    port = listener.address[1]

    async def accepted(sock: socket.socket) -> UserspaceQuicSocket:
        return await listener.accept(timeout=10)

    client = asyncio.create_task(
        gtlsclient(
            port,
            tmp_path,
            f"--key={tmp_path / 'client_rsa.key'}",
            f"--cert={tmp_path / 'client_rsa.pem'}",
            timeout=20,
        )
    )
    try:
        # the accepted fd's peer is 127.0.0.1, as the kernel socket's would be
        done, seq, fd, keys = await serve_one_request(settings, accepted, port, x509_server_reply)
    finally:
        await client  # gtlsclient ends on the close (it is killed after its own timeout)
        listener.close()
        await listener.wait_closed()
    assert [d for _, d in keys] == ["TLS x509 127.0.0.1"]
    assert done == done_sent(seq, 0, fd, (keys[0][0],)), done.hex()
    assert not fd_open(fd)
