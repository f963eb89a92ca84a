# SPDX-License-Identifier: GPL-2.0-or-later
"""The userspace QUIC socket (aioquic over real UDP) against the kernel socket contract,
and full handshakes through quichsd's driver against aioquic's own TLS and ngtcp2.

Contract tests hand-pack the kernel structs with ``struct`` from the offsets documented in
docs/kernel-interfaces.md §2.6 (not with quichsd.uapi), so an encoder/decoder mismatch shows.
"""

from __future__ import annotations

import asyncio
import errno
import os
import select
import socket
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from aioquic.asyncio import connect as aq_connect
from aioquic.buffer import Buffer
from aioquic.h3.connection import H3Connection
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import pull_quic_transport_parameters
from aioquic.tls import Epoch
from pki import Pki
from userspace_peers import (
    GtlsServer,
    aioquic_client_config,
    aioquic_echo_server,
    free_port,
    gtlsclient,
    h3_get,
    h3_serve_one,
)

from quichsd.driver import HandshakeRequest, run_handshake
from quichsd.gnutls.creds import AntiReplay, CertificateCredentials
from quichsd.tls.engine import Role
from quichsd.uapi import Cipher
from quichsd.userspace.aioquic import UserspaceQuicSocket
from quichsd.userspace.options import TransportSettings
from quichsd.userspace.server import UserspaceQuicServer


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


pytestmark = pytest.mark.peer

SOL_QUIC = 288
QUIC_HANDSHAKE_INFO = 1
OPT_CONNECTION_CLOSE, OPT_CONFIG, OPT_ALPN, OPT_TICKET, OPT_SECRET, OPT_TP_EXT = (
    5,
    9,
    11,
    12,
    13,
    14,
)
APP, INITIAL, HANDSHAKE, EARLY = 0, 1, 2, 3


def secret_bytes(level: int, send: bool, cipher: int, secret: bytes) -> bytes:
    """struct quic_crypto_secret: u8 send @0, u8 level @1, u16 reserved @2, u32 type @4,
    u8 secret[48] @8 -- 56 bytes."""
    raw = bytearray(56)
    raw[0] = 1 if send else 0
    raw[1] = level
    raw[4:8] = cipher.to_bytes(4, "little")
    raw[8 : 8 + len(secret)] = secret
    return bytes(raw)


def close_bytes(errcode: int, phrase: bytes, frame: int = 0) -> bytes:
    """struct quic_connection_close: u32 errcode @0, u8 frame @4, u8 reserved[3], phrase[64]."""
    return errcode.to_bytes(4, "little") + bytes([frame, 0, 0, 0]) + phrase.ljust(64, b"\0")


def hs_cmsg(level: int) -> list[tuple[int, int, bytes]]:
    return [(SOL_QUIC, QUIC_HANDSHAKE_INFO, bytes([level]))]


def readable(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])


def at_eof(sock: UserspaceQuicSocket) -> bool:
    try:
        return sock.recvmsg(100, 64)[0] == b""
    except BlockingIOError:
        return False


def oserror(fn: object, *args: object) -> int:
    with pytest.raises(OSError) as ei:
        fn(*args)  # type: ignore[operator]
    assert not isinstance(ei.value, BlockingIOError)
    return int(ei.value.errno or 0)


@pytest_asyncio.fixture
async def pair() -> AsyncIterator[tuple[UserspaceQuicSocket, UserspaceQuicSocket]]:
    """Our client and our server's accepted socket, with fake ClientHello bytes exchanged."""
    server = await UserspaceQuicServer.listen(
        "127.0.0.1", 0, alpns=[b"h3", b"smb"], ticket_key=bytes(range(64))
    )
    client = await UserspaceQuicSocket.connect(
        "127.0.0.1",
        server.address[1],
        alpns=[b"h3", b"smb"],
        cipher=Cipher.AES_CCM_128,
        receive_session_ticket=3,
        session_ticket=b"S" * 80,
    )
    assert client.sendmsg([b"C" * 300], hs_cmsg(INITIAL), 0) == 300
    accepted = await server.accept(timeout=5)
    yield client, accepted
    client.close()
    accepted.close()
    server.close()
    await client.wait_closed()
    await server.wait_closed()


# -- byte-level contract ----------------------------------------------------------------------
async def test_getsockopt_settings(pair: tuple[UserspaceQuicSocket, UserspaceQuicSocket]) -> None:
    client, server = pair
    assert client.getsockopt(socket.SOL_SOCKET, socket.SO_PROTOCOL) == 261
    assert client.getsockopt(SOL_QUIC, OPT_ALPN, 128) == b"h3,smb"
    assert server.getsockopt(SOL_QUIC, OPT_ALPN, 128) == b"h3,smb"
    assert oserror(client.getsockopt, SOL_QUIC, OPT_ALPN, 5) == errno.EINVAL
    cfg = client.getsockopt(SOL_QUIC, OPT_CONFIG, 28)
    assert len(cfg) == 28
    assert struct.unpack_from("<I", cfg, 0)[0] == 1  # version
    assert struct.unpack_from("<I", cfg, 12)[0] == 53  # payload_cipher_type
    assert cfg[19] == 3  # receive_session_ticket (seconds)
    assert len(client.getsockopt(SOL_QUIC, OPT_CONFIG, 24)) == 24  # older, shorter struct
    assert client.getsockopt(SOL_QUIC, OPT_TICKET, 4096) == b"S" * 80
    assert server.getsockopt(SOL_QUIC, OPT_TICKET, 4096) == bytes(range(64))
    for sock in (client, server):
        tp = sock.getsockopt(SOL_QUIC, OPT_TP_EXT, 512)
        params = pull_quic_transport_parameters(Buffer(data=tp))
        assert params.initial_source_connection_id == sock.quic.host_cid
        assert params.initial_max_data == TransportSettings().max_data
        assert oserror(sock.getsockopt, SOL_QUIC, OPT_TP_EXT, len(tp) - 1) == errno.EINVAL
    assert oserror(client.getsockopt, SOL_QUIC, 99, 16) == errno.ENOPROTOOPT
    host, port = client.getpeername()
    assert host == "127.0.0.1" and server.getpeername()[0] == "127.0.0.1"
    assert struct.unpack("<H", struct.pack("<H", port))[0] == port


async def test_recvmsg_partial_reads_ctrunc_and_fd(
    pair: tuple[UserspaceQuicSocket, UserspaceQuicSocket],
) -> None:
    client, server = pair
    fd = server.fileno()
    assert readable(fd)
    data, anc, flags, _ = server.recvmsg(100, socket.CMSG_SPACE(1))
    assert data == b"C" * 100 and anc == [(SOL_QUIC, QUIC_HANDSHAKE_INFO, bytes([INITIAL]))]
    assert not flags & socket.MSG_CTRUNC
    assert readable(fd)  # the rest is still there
    data2, anc2, flags2, _ = server.recvmsg(150, 0)  # no room for the cmsg
    assert data2 == b"C" * 150 and anc2 == [] and flags2 & socket.MSG_CTRUNC
    data3, anc3, _, _ = server.recvmsg(65536, socket.CMSG_SPACE(1))
    assert data3 == b"C" * 50 and anc3[0][2] == bytes([INITIAL])
    assert not readable(fd)
    with pytest.raises(BlockingIOError):
        server.recvmsg(65536, socket.CMSG_SPACE(1))


async def test_sendmsg_rules(pair: tuple[UserspaceQuicSocket, UserspaceQuicSocket]) -> None:
    client, _server = pair
    assert oserror(client.sendmsg, [b"x"], hs_cmsg(EARLY), 0) == errno.EINVAL
    assert oserror(client.sendmsg, [b"x"], hs_cmsg(HANDSHAKE), 0) == errno.EINVAL  # no key yet
    assert oserror(client.sendmsg, [b""], hs_cmsg(INITIAL), 0) == errno.EMSGSIZE
    assert oserror(client.sendmsg, [b"x"], [], 0) == errno.EINVAL  # stream data
    assert oserror(client.sendmsg, [b"x"], hs_cmsg(INITIAL), socket.MSG_OOB) == errno.EINVAL
    # MSG_MORE holds the bytes back; the next send without it flushes both
    assert client.sendmsg([b"M" * 10], hs_cmsg(INITIAL), socket.MSG_MORE) == 10
    client.setsockopt(SOL_QUIC, OPT_SECRET, secret_bytes(HANDSHAKE, True, 51, b"k" * 32))
    assert client.sendmsg([b"h" * 20], hs_cmsg(HANDSHAKE), 0) == 20


async def test_crypto_secret_rules(pair: tuple[UserspaceQuicSocket, UserspaceQuicSocket]) -> None:
    client, _server = pair
    set_secret = client.setsockopt
    assert (
        oserror(set_secret, SOL_QUIC, OPT_SECRET, secret_bytes(INITIAL, True, 51, b"k" * 32))
        == errno.EINVAL
    )
    assert (
        oserror(set_secret, SOL_QUIC, OPT_SECRET, secret_bytes(2, True, 51, b"k" * 32)[:55])
        == errno.EINVAL
    )
    assert (
        oserror(set_secret, SOL_QUIC, OPT_SECRET, secret_bytes(2, True, 50, b"k" * 32))
        == errno.EINVAL
    )
    set_secret(SOL_QUIC, OPT_SECRET, secret_bytes(HANDSHAKE, False, 53, b"r" * 32))  # CCM
    assert client.quic.can_receive(2)  # type: ignore[arg-type]
    assert (
        oserror(set_secret, SOL_QUIC, OPT_SECRET, secret_bytes(HANDSHAKE, False, 53, b"r" * 32))
        == errno.EINVAL
    )  # already installed
    assert client.getsockopt(SOL_QUIC, OPT_TICKET, 4096) == b"S" * 80  # still establishing
    set_secret(SOL_QUIC, OPT_SECRET, secret_bytes(APP, True, 52, b"a" * 48))
    assert not client.established
    set_secret(SOL_QUIC, OPT_SECRET, secret_bytes(APP, False, 52, b"b" * 48))
    assert client.established
    assert (
        oserror(set_secret, SOL_QUIC, OPT_SECRET, secret_bytes(HANDSHAKE, True, 51, b"k" * 32))
        == errno.EINVAL
    )  # after ESTABLISHED
    assert client.getsockopt(SOL_QUIC, OPT_TICKET, 4096) == b""  # no NewSessionTicket yet


async def test_bad_peer_transport_params_close_0x08(
    pair: tuple[UserspaceQuicSocket, UserspaceQuicSocket],
) -> None:
    client, server = pair
    assert oserror(server.setsockopt, SOL_QUIC, OPT_TP_EXT, b"\x01\x09\xff") == errno.EINVAL
    await _until(lambda: client.getsockopt(SOL_QUIC, OPT_CONNECTION_CLOSE, 72)[:4] != bytes(4))
    raw = client.getsockopt(SOL_QUIC, OPT_CONNECTION_CLOSE, 72)
    assert struct.unpack_from("<I", raw, 0)[0] == 0x08
    assert client.recvmsg(100, 64)[0] == b""  # EOF


async def test_valid_peer_transport_params_and_alpn(
    pair: tuple[UserspaceQuicSocket, UserspaceQuicSocket],
) -> None:
    client, server = pair
    server.setsockopt(SOL_QUIC, OPT_TP_EXT, client.getsockopt(SOL_QUIC, OPT_TP_EXT, 512))
    server.setsockopt(SOL_QUIC, OPT_ALPN, b"smb")
    assert server.getsockopt(SOL_QUIC, OPT_ALPN, 128) == b"smb"
    assert oserror(server.setsockopt, SOL_QUIC, OPT_TP_EXT, b"\0" * 513) == errno.EINVAL


async def test_close_of_failed_handshake_sends_set_code(
    pair: tuple[UserspaceQuicSocket, UserspaceQuicSocket],
) -> None:
    client, server = pair
    phrase = b"TLS alert 120: no_application_protocol"
    assert oserror(server.setsockopt, SOL_QUIC, OPT_CONNECTION_CLOSE, b"\0" * 4) == errno.EINVAL
    server.setsockopt(SOL_QUIC, OPT_CONNECTION_CLOSE, close_bytes(0x178, phrase))
    server.close()
    assert server.fileno() == -1
    await _until(lambda: at_eof(client))
    raw = client.getsockopt(SOL_QUIC, OPT_CONNECTION_CLOSE, 72)
    assert struct.unpack_from("<I", raw, 0)[0] == 0x178
    assert raw[8:].split(b"\0", 1)[0] == phrase
    assert client.quic._peer_close.frame_type is not None  # transport close (0x1c)
    assert oserror(client.sendmsg, [b"x"], hs_cmsg(INITIAL), 0) == errno.EPIPE


async def _until(cond: object, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():  # type: ignore[operator]
        assert loop.time() < end, "condition not reached"
        await asyncio.sleep(0.01)


def test_ccm_packet_protection_matches_rfc9001_derivation() -> None:
    """Our 0x1304 registration vs an independent AES-128-CCM with RFC 9001 §5.1 keys."""
    from aioquic.quic.crypto import CryptoContext
    from aioquic.tls import hkdf_expand_label
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESCCM

    from quichsd.userspace import ccm

    ccm.register()
    secret = bytes(range(32))
    ctx = CryptoContext()
    ctx.setup(cipher_suite=0x1304, secret=secret, version=1)  # type: ignore[arg-type]
    header = bytes([0x41]) + b"\x01" * 8 + b"\x00\x07"  # short header, 2-byte PN
    payload = b"\x01" + b"\x00" * 40
    packet = ctx.encrypt_packet(header, payload, 7)
    sha = hashes.SHA256()
    key = hkdf_expand_label(sha, secret, b"quic key", b"", 16)
    iv = hkdf_expand_label(sha, secret, b"quic iv", b"", 12)
    nonce = (int.from_bytes(iv, "big") ^ 7).to_bytes(12, "big")
    sealed = AESCCM(key, tag_length=16).encrypt(nonce, payload, header)
    assert len(packet) == len(header) + len(payload) + 16
    assert packet[len(header) :] == sealed  # header protection touches the header only
    plain_header, plain, pn, _ = ctx.decrypt_packet(packet, len(header) - 2, 7)
    assert (plain_header, plain, pn) == (header, payload, 7)


# -- full handshakes through the driver -------------------------------------------------------
def client_req(creds: CertificateCredentials, **kw: object) -> HandshakeRequest:
    return HandshakeRequest(role=Role.CLIENT, peer_name="localhost", x509=creds, timeout=10, **kw)  # type: ignore[arg-type]


def server_req(
    creds: CertificateCredentials, anti_replay: AntiReplay, **kw: object
) -> HandshakeRequest:
    return HandshakeRequest(role=Role.SERVER, x509=creds, timeout=10, anti_replay=anti_replay, **kw)  # type: ignore[arg-type]


async def test_client_vs_aioquic_resumption_and_0rtt(
    pki_dir: Path, client_creds: CertificateCredentials
) -> None:
    port = free_port()
    server, log = await aioquic_echo_server(port, pki_dir / "server.pem", pki_dir / "server.key")
    try:
        sock = await UserspaceQuicSocket.connect(
            "127.0.0.1", port, alpns=[b"echo"], server_name="localhost", receive_session_ticket=2
        )
        res = await run_handshake(sock, client_req(client_creds))
        assert res.ok, res.error
        assert res.alpn == b"echo" and res.info is not None and not res.info.resumed
        assert res.session_data and sock.session_data == res.session_data
        sid = sock.send_stream(b"one")
        assert await sock.recv_stream(sid, timeout=5) == b"echo:one"
        session, peer_tp = sock.session_data, sock.peer_transport_params
        sock.close()
        await sock.wait_closed()

        sock = await UserspaceQuicSocket.connect(
            "127.0.0.1",
            port,
            alpns=[b"echo"],
            server_name="localhost",
            session_ticket=session,
            peer_transport_params=peer_tp,
        )
        task = asyncio.create_task(run_handshake(sock, client_req(client_creds)))
        assert await asyncio.wait_for(sock.wait_send_ready(), 5)
        assert not sock.established  # 0-RTT: before the handshake completed
        sid = sock.send_stream(b"early")
        res = await task
        assert res.ok, res.error
        assert res.info is not None and res.info.resumed and res.info.early_data_accepted
        assert await sock.recv_stream(sid, timeout=5) == b"echo:early"
        sock.close()
        await sock.wait_closed()
        await _until(lambda: len(log.completed) == 2)
        assert log.completed[1].session_resumed and log.completed[1].early_data_accepted
    finally:
        server.close()


async def test_server_vs_aioquic_client_resumption_0rtt_and_mtls(
    pki: Pki, pki_dir: Path, server_creds: CertificateCredentials, anti_replay: AntiReplay
) -> None:
    server = await UserspaceQuicServer.listen(
        "127.0.0.1", 0, alpns=[b"echo"], certificate_request=2
    )
    port = server.address[1]
    tickets: list[object] = []
    try:
        for attempt in range(2):
            cfg = aioquic_client_config(
                pki_dir / "ca.pem", cert=pki_dir / "client.pem", key=pki_dir / "client.key"
            )
            if tickets:
                cfg.session_ticket = tickets[-1]  # type: ignore[assignment]
            async with aq_connect(
                "127.0.0.1",
                port,
                configuration=cfg,
                session_ticket_handler=tickets.append,
                wait_connected=False,
            ) as client:
                # wait_connected=False: nothing is sent before this write (0-RTT on attempt 1)
                reader, writer = await client.create_stream()
                writer.write(b"ping")
                writer.write_eof()
                sock = await server.accept(timeout=5)
                hs = asyncio.create_task(run_handshake(sock, server_req(server_creds, anti_replay)))
                res = await hs
                assert res.ok, res.error
                assert res.info is not None
                assert res.info.peer_certificates[0] == pki.client.cert_der  # mutual TLS
                assert res.info.resumed == (attempt == 1)
                assert res.info.early_data_accepted == (attempt == 1)
                ev = await sock.next_event(5)
                while not hasattr(ev, "stream_id"):
                    ev = await sock.next_event(5)
                sock.send_stream(b"pong:" + ev.data, stream_id=ev.stream_id)  # type: ignore[attr-defined]
                assert await asyncio.wait_for(reader.read(), 5) == b"pong:ping"
                assert client._quic.tls.session_resumed == (attempt == 1)
                sock.close()
    finally:
        server.close()
        await server.wait_closed()


async def test_alpn_mismatch_peer_sees_0x178(
    pki_dir: Path, server_creds: CertificateCredentials, anti_replay: AntiReplay
) -> None:
    server = await UserspaceQuicServer.listen("127.0.0.1", 0, alpns=[b"smb"])
    try:
        cfg = aioquic_client_config(pki_dir / "ca.pem", alpn="h3")
        async with aq_connect(
            "127.0.0.1", server.address[1], configuration=cfg, wait_connected=False
        ) as client:
            client.transmit()  # the ClientHello
            sock = await server.accept(timeout=5)
            res = await run_handshake(sock, server_req(server_creds, anti_replay))
            assert res.status == errno.EACCES and res.error is not None
            assert res.error.alert == 120
            sock.close()
            with pytest.raises(ConnectionError):
                await asyncio.wait_for(client.wait_connected(), 5)
            close = client._quic._close_event
            assert close.error_code == 0x178 and close.frame_type is not None
            assert "120" in close.reason_phrase
    finally:
        server.close()


async def test_untrusted_server_certificate(
    pki_dir: Path, client_creds: CertificateCredentials
) -> None:
    port = free_port()
    server, log = await aioquic_echo_server(port, pki_dir / "rogue.pem", pki_dir / "rogue.key")
    try:
        sock = await UserspaceQuicSocket.connect(
            "127.0.0.1", port, alpns=[b"echo"], server_name="localhost"
        )
        res = await run_handshake(sock, client_req(client_creds))
        assert res.status == errno.EACCES and res.error is not None
        assert res.error.alert is not None
        sock.close()
        await sock.wait_closed()
        await _until(lambda: bool(log.terminated))
        assert log.terminated[0].error_code == 0x100 + res.error.alert
    finally:
        server.close()


async def test_silent_peer_times_out_and_leaves_no_fd(client_creds: CertificateCredentials) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        before = open_fds()
        sock = await UserspaceQuicSocket.connect(
            "127.0.0.1", silent.getsockname()[1], alpns=[b"h3"], server_name="localhost"
        )
        req = HandshakeRequest(
            role=Role.CLIENT, peer_name="localhost", x509=client_creds, timeout=1.0
        )
        res = await run_handshake(sock, req)
        assert res.status == errno.ETIMEDOUT
        assert silent.recv(2048)  # the ClientHello did go out
        sock.close()
        await sock.wait_closed()
        assert open_fds() == before


# -- ngtcp2 (GnuTLS) -----------------------------------------------------------------------------
SUITES = {
    Cipher.AES_GCM_128: "AES-128-GCM",
    Cipher.AES_GCM_256: "AES-256-GCM",
    Cipher.CHACHA20_POLY1305: "CHACHA20-POLY1305",
    Cipher.AES_CCM_128: "AES-128-CCM",
}


@pytest.mark.parametrize("cipher", list(SUITES), ids=[c.name for c in SUITES])
async def test_client_h3_get_vs_gtlsserver(
    pki_dir: Path, client_creds: CertificateCredentials, cipher: Cipher
) -> None:
    srv = GtlsServer(pki_dir, pki_dir / "server.pem", pki_dir / "server.key")
    try:
        sock = await UserspaceQuicSocket.connect(
            "127.0.0.1", srv.port, alpns=[b"h3"], server_name="localhost", cipher=cipher
        )
        res = await run_handshake(sock, client_req(client_creds))
        assert res.ok, res.error
        assert res.info is not None and res.info.cipher is cipher
        h3 = H3Connection(sock.quic)
        status, body = await h3_get(sock, f"localhost:{srv.port}", "/index.html", h3)
        assert (status, body) == (200, b"hello from gtlsserver\n")
        phase = sock.quic._cryptos[Epoch.ONE_RTT].recv.key_phase
        sock.quic.request_key_update()  # the next phase's keys come from the same suite
        status, body = await h3_get(sock, f"localhost:{srv.port}", "/index.html", h3)
        assert (status, body) == (200, b"hello from gtlsserver\n")
        assert sock.quic._cryptos[Epoch.ONE_RTT].recv.key_phase != phase
        sock.close()
        await sock.wait_closed()
    finally:
        srv.stop()


async def test_client_resumption_0rtt_and_mtls_vs_gtlsserver(
    pki: Pki, pki_dir: Path, client_creds: CertificateCredentials
) -> None:
    client_creds.set_key_pair(pki.client.cert_pem, pki.client.key_pem)
    srv = GtlsServer(pki_dir, pki_dir / "server.pem", pki_dir / "server.key", "--verify-client")
    session: bytes | None = None
    peer_tp: bytes | None = None
    try:
        for attempt in range(2):
            sock = await UserspaceQuicSocket.connect(
                "127.0.0.1",
                srv.port,
                alpns=[b"h3"],
                server_name="localhost",
                session_ticket=session,
                peer_transport_params=peer_tp,
                receive_session_ticket=2,
            )
            res = await run_handshake(sock, client_req(client_creds))
            assert res.ok, res.error
            assert res.info is not None
            assert res.info.resumed == (attempt == 1)
            assert res.info.early_data_accepted == (attempt == 1)
            assert await h3_get(sock, f"localhost:{srv.port}", "/index.html") == (
                200,
                b"hello from gtlsserver\n",
            )
            session, peer_tp = sock.session_data, sock.peer_transport_params
            assert session
            sock.close()
            await sock.wait_closed()
    finally:
        srv.stop()


@pytest.mark.parametrize("cipher", list(SUITES), ids=[c.name for c in SUITES])
async def test_server_h3_vs_gtlsclient(
    pki_dir: Path, server_creds: CertificateCredentials, anti_replay: AntiReplay, cipher: Cipher
) -> None:
    server = await UserspaceQuicServer.listen("127.0.0.1", 0, alpns=[b"h3"])
    port = server.address[1]
    prio = f"NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+{SUITES[cipher]}"
    try:
        client = asyncio.create_task(gtlsclient(port, pki_dir, f"--ciphers={prio}"))
        sock = await server.accept(timeout=5)
        res = await run_handshake(sock, server_req(server_creds, anti_replay))
        assert res.ok, res.error
        assert res.info is not None and res.info.cipher is cipher and res.alpn == b"h3"
        headers = await h3_serve_one(sock, b"quichsd-h3-ok")
        assert (b":method", b"GET") in headers
        out = await client
        sock.close()
        assert "QUIC handshake has completed" in out
        assert f"Negotiated cipher suite is {SUITES[cipher]}" in out
        assert "[:status: 200]" in out and "|quichsd-h3-ok|" in out  # body hexdump
    finally:
        server.close()
        await server.wait_closed()


def garbage_initial() -> bytes:
    """A 1200-byte datagram with a valid Initial long header and random, undecryptable
    contents (what a spoofer or a corrupted path delivers)."""
    body = os.urandom(1200)
    return (
        bytes([0xC3])
        + (1).to_bytes(4, "big")
        + bytes([8])
        + os.urandom(8)
        + bytes([8])
        + os.urandom(8)
        + b"\x00"
        + (0x4000 | len(body)).to_bytes(2, "big")
        + body
    )


async def test_listener_ignores_undecryptable_initials_then_serves_gtlsclient(
    pki_dir: Path, server_creds: CertificateCredentials, anti_replay: AntiReplay
) -> None:
    """40 garbage Initials (more than the backlog of 16) leave no pending connection and
    send nothing back; a real client is then accepted. Before the fix each garbage
    Initial stayed pending for good and the 16th closed the listener to everyone."""
    server = await UserspaceQuicServer.listen("127.0.0.1", 0, alpns=[b"h3"])
    port = server.address[1]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as spoof:
        spoof.bind(("127.0.0.1", 0))
        spoof.settimeout(0.3)
        for _ in range(40):
            spoof.sendto(garbage_initial(), ("127.0.0.1", port))
        with pytest.raises(TimeoutError):
            spoof.recvfrom(2048)  # no reply to garbage (no amplification)
    try:
        assert (len(server._pending), len(server._accept), len(server._routes)) == (0, 0, 0)
        client = asyncio.create_task(gtlsclient(port, pki_dir))
        sock = await server.accept(timeout=5)
        res = await run_handshake(sock, server_req(server_creds, anti_replay))
        assert res.ok, res.error
        sock.close()
        assert "QUIC handshake has completed" in await client
    finally:
        server.close()
        await server.wait_closed()


def second_part_of_a_client_hello() -> bytes:
    """The second Initial datagram of an aioquic client whose ClientHello spans several
    (100 long ALPN names), as if the first was lost: it decrypts, but its CRYPTO data does
    not start at offset 0, so nothing is readable yet and the connection stays pending."""
    cfg = QuicConfiguration(is_client=True, alpn_protocols=[f"{i:03d}" * 40 for i in range(100)])
    conn = QuicConnection(configuration=cfg)
    conn.connect(("127.0.0.1", 9), now=0.0)
    datagrams = [d for d, _ in conn.datagrams_to_send(now=0.0)]
    assert len(datagrams) >= 2  # the premise: the ClientHello spans datagrams
    return datagrams[1]


async def test_half_open_connections_free_the_backlog_at_their_idle_timeout(
    pki_dir: Path, server_creds: CertificateCredentials, anti_replay: AntiReplay
) -> None:
    """16 clients whose first Initial was lost send only the second one and vanish: they
    fill the backlog, but once their idle timeout (1 s here) has passed a real client is
    served. Before the fix the ended connections were cleared only after the backlog
    check, which refused the new client first, so the listener stayed closed."""
    server = await UserspaceQuicServer.listen(
        "127.0.0.1", 0, alpns=[b"h3"], transport=TransportSettings(idle_timeout=1.0)
    )
    port = server.address[1]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as half:
        half.bind(("127.0.0.1", 0))
        for _ in range(16):
            half.sendto(second_part_of_a_client_hello(), ("127.0.0.1", port))
        await asyncio.sleep(0.2)
        assert len(server._pending) == 16 and not server._accept
        await asyncio.sleep(1.5)
    try:
        client = asyncio.create_task(gtlsclient(port, pki_dir))
        sock = await server.accept(timeout=5)
        res = await run_handshake(sock, server_req(server_creds, anti_replay))
        assert res.ok, res.error
        sock.close()
        assert "QUIC handshake has completed" in await client
        assert len(server._pending) == 0
    finally:
        server.close()
        await server.wait_closed()


async def test_server_resumption_0rtt_and_mtls_vs_gtlsclient(
    pki: Pki,
    pki_dir: Path,
    server_creds: CertificateCredentials,
    anti_replay: AntiReplay,
    tmp_path: Path,
) -> None:
    server = await UserspaceQuicServer.listen("127.0.0.1", 0, alpns=[b"h3"], certificate_request=2)
    port = server.address[1]
    extra = (
        f"--session-file={tmp_path / 'sess.pem'}",
        f"--tp-file={tmp_path / 'tp.bin'}",
        f"--key={pki_dir / 'client.key'}",
        f"--cert={pki_dir / 'client.pem'}",
    )
    try:
        for attempt in range(2):
            client = asyncio.create_task(gtlsclient(port, pki_dir, *extra))
            sock = await server.accept(timeout=5)
            res = await run_handshake(sock, server_req(server_creds, anti_replay))
            assert res.ok, res.error
            assert res.info is not None
            assert res.info.resumed == (attempt == 1)
            assert res.info.early_data_accepted == (attempt == 1)
            if attempt == 0:
                assert res.info.peer_certificates[0] == pki.client.cert_der
            await h3_serve_one(sock, b"hello again")
            out = await client
            sock.close()
            assert "[:status: 200]" in out and "|hello again|" in out
            assert "Early data was rejected" not in out
    finally:
        server.close()
        await server.wait_closed()
