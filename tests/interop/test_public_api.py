# SPDX-License-Identifier: GPL-2.0-or-later
"""Issue 12 item 9: the public API (``from quichsd import ...``, docs/api.md) against real
peers: the docs' example (docs/examples/h3_get.py) does a handshake with ngtcp2's
gtlsserver and an HTTP/3 GET afterwards, in this process and through a real daemon;
``server_handshake`` serves gtlsclient; ``hand_off`` gives a connected TCP socket to the
daemon, which runs TLS 1.3 on it against gnutls-serv."""

from __future__ import annotations

import asyncio
import errno
import json
import subprocess
import sys
from pathlib import Path

import pytest
from tcp_peers import GnutlsServ
from userspace_peers import GtlsServer, gtlsclient, h3_serve_one

import quichsd
from quichsd.userspace.aioquic import UserspaceQuicSocket
from quichsd.userspace.server import UserspaceQuicServer

sys.path.insert(0, str(Path(__file__).parents[1] / "unix"))
from unixd import start_daemon  # noqa: E402

pytestmark = pytest.mark.peer

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "h3_get.py"
SUITES = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}


def example(*args: str) -> tuple[int, dict[str, object]]:
    r = subprocess.run(
        [sys.executable, str(EXAMPLE), *args], capture_output=True, text=True, timeout=60
    )
    assert r.stderr == "", r.stderr
    return r.returncode, json.loads(r.stdout)


def test_the_api_names_load_lazily_from_the_package() -> None:
    code = (
        "import sys, quichsd\n"
        "assert 'quichsd.api' not in sys.modules and 'quichsd.gnutls._lib' not in sys.modules\n"
        "from quichsd import Handshake, HandshakeFailed, client_handshake, server_handshake\n"
        "from quichsd import daemon_handshake, hand_off, DEFAULT_DAEMON_SOCKET\n"
        "assert set(quichsd.__all__) <= set(dir(quichsd))\n"
        "try:\n"
        "    quichsd.no_such_name\n"
        "except AttributeError as e:\n"
        "    print(e)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "module 'quichsd' has no attribute 'no_such_name'"


def test_example_handshake_in_process_then_http3_get(pki_dir: Path) -> None:
    server = GtlsServer(pki_dir, pki_dir / "server.pem", pki_dir / "server.key")
    try:
        rc, out = example(
            "127.0.0.1", str(server.port), "--server-name", "server.test",
            "--cafile", str(pki_dir / "ca.pem"),
        )  # fmt: skip
    finally:
        server.stop()
    assert rc == 0, out
    assert out["role"] == "client" and out["alpn"] == "h3" and out["resumed"] is False
    assert out["cipher"] in SUITES and out["group"] == "X25519", out
    # the page gtlsserver served from its htdocs, over the connection the handshake keyed
    assert out["http_status"] == 200 and out["body"] == "hello from gtlsserver\n", out


def test_example_refuses_a_server_from_another_ca(pki_dir: Path) -> None:
    server = GtlsServer(pki_dir, pki_dir / "rogue.pem", pki_dir / "rogue.key")
    try:
        rc, out = example(
            "127.0.0.1", str(server.port), "--server-name", "server.test",
            "--cafile", str(pki_dir / "ca.pem"),
        )  # fmt: skip
    finally:
        server.stop()
    assert rc == 1 and out["ok"] is False, out
    assert out["status"] == errno.EACCES and out["error"] == "EACCES", out
    assert str(out["reason"]).startswith("server.test: "), out


def test_example_through_the_daemon(tmp_path: Path) -> None:
    """``--daemon``: the daemon runs the TLS (its own trust store: the test CA)."""
    daemon = start_daemon(tmp_path)
    (tmp_path / "htdocs" / "index.html").write_text("served to the daemon's client\n")
    server = GtlsServer(tmp_path, tmp_path / "server.pem", tmp_path / "server.key")
    try:
        rc, out = example(
            "127.0.0.1", str(server.port), "--server-name", "server.test",
            "--daemon", str(daemon.sock),
        )  # fmt: skip
    finally:
        server.stop()
        daemon.stop()
    assert rc == 0, out
    assert out["cipher"] in SUITES and out["group"] == "X25519" and out["alpn"] == "h3", out
    assert out["http_status"] == 200 and out["body"] == "served to the daemon's client\n"
    log = daemon.log.read_text()
    assert "(CLIENTHELLO, X509, socket-ops) done: status 0 OK" in log, log


async def test_server_handshake_serves_gtlsclient(pki_dir: Path) -> None:
    server = await UserspaceQuicServer.listen("127.0.0.1", 0, alpns=[b"h3"])
    try:
        client = asyncio.create_task(gtlsclient(server.address[1], pki_dir))
        sock = await server.accept(timeout=5)
        hs = await quichsd.server_handshake(
            sock, cert=str(pki_dir / "server.pem"), key=str(pki_dir / "server.key")
        )
        await h3_serve_one(sock, b"quichsd-api-ok")
        out = await client
        sock.close()
    finally:
        server.close()
        await server.wait_closed()
    assert hs.role == "server" and hs.alpn == "h3" and hs.cipher in SUITES
    assert hs.peer_certificates == () and not hs.resumed
    gnutls_name = {"TLS_AES_128_GCM_SHA256": "AES-128-GCM", "TLS_AES_256_GCM_SHA384": "AES-256-GCM"}
    assert f"Negotiated cipher suite is {gnutls_name.get(hs.cipher, '?')}" in out, out
    assert "[:status: 200]" in out and "|quichsd-api-ok|" in out


async def test_client_handshake_reports_the_peer_chain(pki_dir: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    server = GtlsServer(pki_dir, pki_dir / "server.pem", pki_dir / "server.key")
    try:
        sock = await UserspaceQuicSocket.connect(
            "127.0.0.1", server.port, alpns=["h3"], server_name="server.test"
        )
        try:
            hs = await quichsd.client_handshake(
                sock,
                server_name="server.test",
                cafile=str(pki_dir / "ca.pem"),
                ciphers=["TLS_AES_256_GCM_SHA384"],
            )
        finally:
            sock.close()
            await sock.wait_closed()
    finally:
        server.stop()
    assert hs.cipher == "TLS_AES_256_GCM_SHA384" and hs.duration_ms > 0
    leaf = x509.load_der_x509_certificate(hs.peer_certificates[0])
    assert leaf.public_bytes(Encoding.PEM) == (pki_dir / "server.pem").read_bytes()


async def test_bad_arguments_are_named(pki_dir: Path, tmp_path: Path) -> None:
    sock = await UserspaceQuicSocket.connect("127.0.0.1", 9, alpns=["h3"])
    try:
        with pytest.raises(ValueError, match=r"unknown cipher suite 'AES-128-GCM'; one of TLS_"):
            await quichsd.client_handshake(sock, ciphers=["AES-128-GCM"])
        with pytest.raises(ValueError, match=r"^cafile .*/nope.pem: No such file or directory$"):
            await quichsd.client_handshake(sock, cafile=str(tmp_path / "nope.pem"))
        with pytest.raises(ValueError, match="cert and key go together"):
            await quichsd.client_handshake(sock, cert=str(pki_dir / "client.pem"))
        with pytest.raises(ValueError, match="role 'peer': 'client' or 'server'"):
            await quichsd.daemon_handshake(sock, role="peer")  # type: ignore[arg-type]
        gone = tmp_path / "none.sock"
        with pytest.raises(quichsd.HandshakeFailed) as e:
            await quichsd.daemon_handshake(sock, daemon=str(gone))
        assert e.value.status == errno.ENOENT and e.value.errno_name == "ENOENT"
        assert str(e.value) == f"ENOENT: daemon at {gone}: {gone}: No such file or directory"
    finally:
        sock.close()
        await sock.wait_closed()


async def test_hand_off_a_tcp_socket_to_the_daemon(tmp_path: Path) -> None:
    """The daemon runs TLS 1.3 on the handed-over TCP socket against gnutls-serv; this
    host's kernel has no TLS ULP, so the hand-back ends with EIO naming it, as DONE would."""
    daemon = start_daemon(tmp_path)
    pem, key = str(tmp_path / "server.pem"), str(tmp_path / "server.key")
    serv = GnutlsServ(
        tmp_path,
        priority="NORMAL:-VERS-ALL:+VERS-TLS1.3",
        extra=("--x509certfile", pem, "--x509keyfile", key),
    )
    ktls = "tls" in Path("/proc/sys/net/ipv4/tcp_available_ulp").read_text().split()
    try:
        with serv.connect() as tcp:
            if ktls:
                hs = await quichsd.hand_off(tcp, server_name="server.test", daemon=str(daemon.sock))
                assert hs.cipher in SUITES and hs.role == "client"
                tcp.sendall(b"over kTLS\n")
                assert tcp.recv(64) == b"over kTLS\n"  # gnutls-serv --echo
            else:
                with pytest.raises(quichsd.HandshakeFailed) as e:
                    await quichsd.hand_off(tcp, server_name="server.test", daemon=str(daemon.sock))
                assert e.value.status == errno.EIO, e.value
                assert "TCP_ULP tls: the kernel has no TLS ULP" in e.value.reason, e.value
    finally:
        out = serv.stop()
        daemon.stop()
    # gnutls-serv saw a full TLS 1.3 handshake from the daemon before the kTLS step
    assert "TLS1.3" in out, out
    assert "(CLIENTHELLO, X509, fd handoff) done: status" in daemon.log.read_text()


async def test_client_resumes_with_the_session_data_it_got(pki_dir: Path) -> None:
    """``Handshake.session`` (the socket asked for a ticket) resumes the next connection."""
    server = GtlsServer(pki_dir, pki_dir / "server.pem", pki_dir / "server.key")
    results: list[quichsd.Handshake] = []
    try:
        session: bytes | None = None
        peer_tp: bytes | None = None
        for _ in range(2):
            sock = await UserspaceQuicSocket.connect(
                "127.0.0.1", server.port, alpns=["h3"], server_name="server.test",
                session_ticket=session, peer_transport_params=peer_tp, receive_session_ticket=1,
            )  # fmt: skip
            try:
                hs = await quichsd.client_handshake(
                    sock, server_name="server.test", cafile=str(pki_dir / "ca.pem")
                )
                session, peer_tp = hs.session, sock.peer_transport_params
            finally:
                sock.close()
                await sock.wait_closed()
            results.append(hs)
    finally:
        server.stop()
    first, second = results
    assert first.session and not first.resumed and first.peer_certificates
    # a resumed session keeps the identity verified when it was established
    assert second.resumed and second.peer_certificates == first.peer_certificates, second
