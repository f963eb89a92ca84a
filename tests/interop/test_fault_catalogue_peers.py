# SPDX-License-Identifier: GPL-2.0-or-later
"""Fault-catalogue cases against real QUIC peers (docs/fault-catalogue.md): a TLS 1.2-only
peer on either side, transport parameters larger than the kernel's 512 bytes on either
side, an IP-literal peer name (no SNI), and session data larger than the kernel's 4096.

Our side is the driver on the userspace QUIC socket (aioquic over UDP, quichsd's TLS);
the peers are ngtcp2's gtlsserver/gtlsclient and aioquic with its own TLS.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aioquic.tls
import pytest
from aioquic.asyncio import connect as aq_connect
from pki import SERVER_NAMES, Pki, issue
from test_userspace_socket import client_req, server_req
from userspace_peers import GtlsServer, aioquic_client_config, aioquic_echo_server, free_port
from userspace_peers import gtlsclient as run_gtlsclient

from quichsd.driver import run_handshake
from quichsd.errors import InvalidRequest
from quichsd.gnutls.creds import AntiReplay, CertificateCredentials
from quichsd.userspace.aioquic import UserspaceQuicSocket
from quichsd.userspace.server import UserspaceQuicServer

pytestmark = pytest.mark.peer

TLS12_ONLY = "--ciphers=NORMAL:-VERS-ALL:+VERS-TLS1.2"


# -- a TLS 1.2-only peer: QUIC needs TLS 1.3 (RFC 9001 §4.2), protocol_version (70) -------
async def test_tls12_only_gtlsclient_is_refused_with_protocol_version(
    pki_dir: Path, server_creds: CertificateCredentials, anti_replay: AntiReplay
) -> None:
    """gtlsclient restricted to TLS 1.2 still speaks QUIC: its ClientHello offers no TLS
    1.3. Our server refuses it with protocol_version: EACCES, CONNECTION_CLOSE 0x146."""
    server = await UserspaceQuicServer.listen("127.0.0.1", 0, alpns=[b"h3"])
    try:
        client = asyncio.create_task(run_gtlsclient(server.address[1], pki_dir, TLS12_ONLY))
        sock = await server.accept(timeout=5)
        res = await run_handshake(sock, server_req(server_creds, anti_replay))
        sock.close()
        out = await client
    finally:
        server.close()
        await server.wait_closed()
    assert res.status == errno.EACCES and res.error is not None, res
    assert res.error.alert == 70, res.error
    assert "unsupported version" in res.error.reason, res.error.reason
    assert "CONNECTION_CLOSE(0x1c) error_code=CRYPTO_ERROR(0x146)" in out, out[-3000:]
    assert "QUIC handshake has completed" not in out


def test_tls12_only_gtlsserver_refuses_our_tls13_only_client_hello(pki_dir: Path) -> None:
    """gtlsserver restricted to TLS 1.2 finds no suite it can use in our ClientHello (TLS
    1.3 suites only, no TLS 1.2 key exchange: issue 12 item 3) and closes with
    handshake_failure (0x128) at once: our client reports the peer's alert 40, EACCES, and
    never reaches a ServerHello to misreport."""
    srv = GtlsServer(pki_dir, pki_dir / "server.pem", pki_dir / "server.key", TLS12_ONLY)
    try:
        res = asyncio.run(_connect_once(pki_dir, srv.port))
    finally:
        srv.stop()
    assert res.status == errno.EACCES and res.error is not None, res
    assert res.error.reason == "peer closed the connection with TLS alert 40 (handshake_failure)"
    assert res.elapsed < 5, res  # the peer's close, not our deadline


async def _connect_once(pki_dir: Path, port: int) -> Any:
    creds = CertificateCredentials()
    creds.set_trust((pki_dir / "ca.pem").read_bytes())
    try:
        sock = await UserspaceQuicSocket.connect(
            "127.0.0.1", port, alpns=[b"h3"], server_name="server.test"
        )
        try:
            return await run_handshake(sock, replace(client_req(creds), peer_name="server.test"))
        finally:
            sock.close()
            await sock.wait_closed()
    finally:
        creds.close()


# -- transport parameters over the kernel's 512 bytes (QUIC_SOCKOPT_TRANSPORT_PARAM_EXT) ------
def assert_tp_size_named(reason: str) -> None:
    m = re.fullmatch(r"peer transport parameters of (\d+) bytes exceed the kernel's 512", reason)
    assert m is not None and int(m[1]) > 1200, reason  # aioquic's 1200-byte parameter and more


async def test_server_transport_params_over_512_bytes_is_einval_naming_the_size(
    pki_dir: Path, client_creds: CertificateCredentials
) -> None:
    """aioquic's quantum-readiness test parameter (1200 bytes) makes its server's transport
    parameters larger than a kernel socket takes: the client handshake ends EINVAL with the
    size in the reason, before TRANSPORT_PARAM_EXT is set."""
    port = free_port()
    server, _log = await aioquic_echo_server(
        port, pki_dir / "server.pem", pki_dir / "server.key", quantum_readiness=True
    )
    try:
        sock = await UserspaceQuicSocket.connect(
            "127.0.0.1", port, alpns=[b"echo"], server_name="server.test"
        )
        res = await run_handshake(sock, client_req(client_creds))
        sock.close()
        await sock.wait_closed()
    finally:
        server.close()
    assert res.status == errno.EINVAL and isinstance(res.error, InvalidRequest), res
    assert_tp_size_named(res.error.reason)
    assert sock.peer_transport_params is None  # never handed to the socket


async def test_client_transport_params_over_512_bytes_is_einval_naming_the_size(
    pki_dir: Path, server_creds: CertificateCredentials, anti_replay: AntiReplay
) -> None:
    server = await UserspaceQuicServer.listen("127.0.0.1", 0, alpns=[b"echo"])
    try:
        cfg = aioquic_client_config(pki_dir / "ca.pem")
        cfg.quantum_readiness_test = True
        async with aq_connect(
            "127.0.0.1", server.address[1], configuration=cfg, wait_connected=False
        ) as client:
            client.transmit()  # the ClientHello
            sock = await server.accept(timeout=5)
            res = await run_handshake(sock, server_req(server_creds, anti_replay))
            sock.close()
            with pytest.raises(ConnectionError):
                await asyncio.wait_for(client.wait_connected(), 5)
    finally:
        server.close()
        await server.wait_closed()
    assert res.status == errno.EINVAL and isinstance(res.error, InvalidRequest), res
    assert_tp_size_named(res.error.reason)


# -- an IP-literal peer name: no SNI (RFC 6066 §3) ------------------------------------------
@pytest.fixture
def server_names_seen(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str | None]]:
    """The server_name aioquic's server parses out of each ClientHello it receives."""
    seen: list[str | None] = []
    real = aioquic.tls.pull_client_hello

    def pull(buf: Any) -> Any:
        hello = real(buf)
        seen.append(hello.server_name)
        return hello

    monkeypatch.setattr(aioquic.tls, "pull_client_hello", pull)
    yield seen


@pytest.mark.parametrize(
    ("peer_name", "sni"), [("127.0.0.1", None), ("server.test", "server.test")]
)
async def test_ip_literal_peer_name_sends_no_sni(
    pki_dir: Path,
    client_creds: CertificateCredentials,
    server_names_seen: list[str | None],
    peer_name: str,
    sni: str | None,
) -> None:
    """aioquic's server reads our ClientHello: a DNS peer name is its SNI, an IP literal
    sends none. (Verification against the certificate's IP SAN: issue 11 item 2.)"""
    port = free_port()
    server, _log = await aioquic_echo_server(port, pki_dir / "server.pem", pki_dir / "server.key")
    try:
        sock = await UserspaceQuicSocket.connect(
            "127.0.0.1", port, alpns=[b"echo"], server_name=peer_name
        )
        res = await run_handshake(sock, replace(client_req(client_creds), peer_name=peer_name))
        sock.close()
        await sock.wait_closed()
    finally:
        server.close()
    assert res.ok, res.error
    assert server_names_seen == [sni]


# -- session data over the kernel's 4096 bytes (QUIC_SOCKOPT_SESSION_TICKET) -----------------
def test_session_data_over_4096_bytes_is_not_stored_handshake_succeeds(
    pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """GnuTLS's session data holds the server's certificate: gtlsserver with a 4.8 KB
    certificate (200 extra names) gives session data over 4096 bytes. The handshake still
    succeeds (DONE 0); the session data is not handed to the socket, with one warning."""
    names = SERVER_NAMES + tuple(f"name{i:04d}.server.test" for i in range(200))
    big = issue("server.test", pki.ca, sans=names, eku="server")
    (tmp_path / "htdocs").mkdir()
    (tmp_path / "big.pem").write_bytes(big.cert_pem)
    (tmp_path / "big.key").write_bytes(big.key_pem)
    (tmp_path / "ca.pem").write_bytes(pki.ca.cert_pem)
    srv = GtlsServer(tmp_path, tmp_path / "big.pem", tmp_path / "big.key")
    try:
        with caplog.at_level(logging.WARNING, "quichsd.driver"):
            res, stored = asyncio.run(_connect_for_ticket(tmp_path, srv.port))
    finally:
        srv.stop()
    assert res.ok, res.error
    assert res.session_data is not None and len(res.session_data) > 4096
    assert stored is None
    warnings = [r.getMessage() for r in caplog.records if r.name == "quichsd.driver"]
    assert warnings == [
        f"session data of {len(res.session_data)} bytes exceeds the kernel's 4096; not stored"
    ]


async def _connect_for_ticket(d: Path, port: int) -> tuple[Any, bytes | None]:
    creds = CertificateCredentials()
    creds.set_trust((d / "ca.pem").read_bytes())
    try:
        sock = await UserspaceQuicSocket.connect(
            "127.0.0.1", port, alpns=[b"h3"], server_name="server.test", receive_session_ticket=2
        )
        try:
            res = await run_handshake(sock, replace(client_req(creds), peer_name="server.test"))
            return res, sock.session_data
        finally:
            sock.close()
            await sock.wait_closed()
    finally:
        creds.close()
