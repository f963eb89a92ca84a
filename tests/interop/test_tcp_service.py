# SPDX-License-Identifier: GPL-2.0-or-later
"""The service's TCP path with certificates, as NFS (``xprtsec=tls|mtls``) and nfsd ask:
x509 server against gnutls-cli (with and without a client certificate), x509 and
anonymous clients against gnutls-serv; the session handed to (recorded) kTLS and used.

Requests go through :meth:`HandshakeService.handle_detailed`, the netlink agent's
handler, with the kernel's AcceptRequest fields as NFS sends them.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pki import make_pki
from tcp_peers import GnutlsCli, GnutlsServ, accept_one, free_tcp_port
from tlsrecord import Recorder, read_record

from quichsd import keyring as kr
from quichsd import uapi
from quichsd.config import parse_config
from quichsd.credentials import load_credentials
from quichsd.netlink import AcceptRequest
from quichsd.service import HandshakeService

TLS13 = "NORMAL:-VERS-ALL:+VERS-TLS1.3"


def config(
    d: Path,
    client_certificate: str = "socket",
    unauth_verify: bool = True,
    client_cert: bool = False,
) -> str:
    own = (
        f"    certificate: {d / 'client.pem'}\n    private_key: {d / 'client.key'}\n"
        if client_cert
        else ""
    )
    return (
        "client:\n"
        f"  verify_server_unauthenticated: {str(unauth_verify).lower()}\n"
        f"  x509:\n    truststore: {d / 'ca.pem'}\n{own}"
        "server:\n"
        "  x509:\n"
        f"    certificate: {d / 'server.pem'}\n"
        f"    private_key: {d / 'server.key'}\n"
        f"    truststore: {d / 'ca.pem'}\n"
        f"  client_certificate: {client_certificate}\n"
        "unix_socket:\n  enabled: false\n"
    )


@pytest.fixture
def pki_dir(tmp_path: Path) -> Path:
    make_pki().write(tmp_path)
    return tmp_path


@pytest.fixture
async def peer_keyring() -> AsyncIterator[int]:
    ring = kr.add_key("keyring", "quichsd-tcp-peers", None, kr.KEY_SPEC_PROCESS_KEYRING)
    yield ring
    kr.unlink(ring, kr.KEY_SPEC_PROCESS_KEYRING)


def service(d: Path, rec: Recorder, ring: int, **kw: object) -> HandshakeService:
    settings = parse_config(config(d, **kw), str(d / "config.yaml"))  # type: ignore[arg-type]
    return HandshakeService(
        settings, load_credentials(settings), ktls_install=rec, peer_key_keyring=ring
    )


def x509_serv(tmp_path: Path, d: Path, cert: str, *extra: str) -> GnutlsServ:
    """gnutls-serv (TLS 1.3) with the PKI's ``cert`` (``d/<cert>.pem`` and ``.key``)."""
    files = ("--x509certfile", str(d / f"{cert}.pem"), "--x509keyfile", str(d / f"{cert}.key"))
    return GnutlsServ(tmp_path, priority=TLS13, extra=(*files, *extra))


def accept(role: uapi.MsgType, auth: uapi.AuthMode, peername: str | None = None) -> AcceptRequest:
    return AcceptRequest(-1, role, auth, timeout_ms=5000, peername=peername)


async def serve(
    svc: HandshakeService, cli_args: tuple[str, ...]
) -> tuple[object, Recorder, str, bytes]:
    """SERVERHELLO X509 on an accepted TCP socket against gnutls-cli; after the hand-over
    gnutls-cli's line is opened and an answer sealed with the recorded keys."""
    rec = svc.ktls_install
    assert isinstance(rec, Recorder)
    port = free_tcp_port()
    got = b""
    with socket.create_server(("127.0.0.1", port)) as ls:
        cli = GnutlsCli(port, "--x509cafile", str(cli_args[0]), *cli_args[1:], priority=TLS13)
        with await accept_one(ls) as conn:
            outcome, _res = await svc.handle_detailed(
                accept(uapi.MsgType.SERVERHELLO, uapi.AuthMode.X509), conn, peer_key=True
            )
            if outcome.status == 0:
                tx, rx = rec.layers()
                conn.setblocking(True)
                cli.send_line("nfs client says hi")
                _, got = rx.open(read_record(conn))
                conn.sendall(tx.seal(b"nfsd answers\n"))
            await asyncio.sleep(0.3)
        out = cli.finish()
    return outcome, rec, out, got


async def test_x509_server_with_a_client_certificate_reports_it_as_remote_auth(
    pki_dir: Path, peer_keyring: int
) -> None:
    svc = service(pki_dir, Recorder(), peer_keyring)
    d = pki_dir
    outcome, _, out, got = await serve(
        svc,
        (
            str(d / "ca.pem"),
            "--x509certfile",
            str(d / "client_rsa.pem"),
            "--x509keyfile",
            str(d / "client_rsa.key"),
        ),
    )
    assert outcome.status == 0, outcome  # type: ignore[attr-defined]
    assert outcome.reason.endswith(", kTLS")  # type: ignore[attr-defined]
    assert got == b"nfs client says hi\n"
    assert "nfsd answers" in out, out
    keys = [kr.describe_key(k).description for k in kr.keyring_members(peer_keyring)]
    assert keys == ["TLS x509 127.0.0.1"]
    assert outcome.remote_auth == tuple(kr.keyring_members(peer_keyring))  # type: ignore[attr-defined]


async def test_x509_server_without_a_client_certificate_when_required_is_eacces(
    pki_dir: Path, peer_keyring: int
) -> None:
    rec = Recorder()
    svc = service(pki_dir, rec, peer_keyring, client_certificate="require")
    outcome, _, out, _ = await serve(svc, (str(pki_dir / "ca.pem"),))
    assert outcome.status == errno.EACCES  # type: ignore[attr-defined]
    assert not rec.calls
    assert "alert" in out.lower(), out


async def test_x509_client_verifies_the_peername_against_gnutls_serv(
    pki_dir: Path, peer_keyring: int, tmp_path: Path
) -> None:
    serv = x509_serv(tmp_path, pki_dir, "server_rsa")
    rec = Recorder()
    svc = service(pki_dir, rec, peer_keyring)
    try:
        with serv.connect() as sock:
            ok, _ = await svc.handle_detailed(
                accept(uapi.MsgType.CLIENTHELLO, uapi.AuthMode.X509, "server.test"),
                sock,
                peer_key=True,
            )
        with serv.connect() as sock:
            bad, _ = await svc.handle_detailed(
                accept(uapi.MsgType.CLIENTHELLO, uapi.AuthMode.X509, "nfs.example"), sock
            )
    finally:
        serv.stop()
    assert ok.status == 0, ok
    keys = [kr.describe_key(k).description for k in kr.keyring_members(peer_keyring)]
    assert keys == ["TLS x509 server.test"] and ok.remote_auth == tuple(
        kr.keyring_members(peer_keyring)
    )
    assert bad.status == errno.EACCES
    assert bad.reason is not None and "peer certificate rejected" in bad.reason
    assert len(rec.calls) == 1


@pytest.mark.parametrize(
    ("cert", "verify", "status"),
    [
        ("server", True, 0),  # the anonymous client still checks the server, by policy
        ("rogue", True, errno.EACCES),  # signed by a CA the client does not trust
        ("rogue", False, 0),  # verify_server_unauthenticated: false
    ],
)
async def test_anonymous_client_verifies_the_server_by_policy(
    pki_dir: Path, peer_keyring: int, tmp_path: Path, cert: str, verify: bool, status: int
) -> None:
    serv = x509_serv(tmp_path, pki_dir, cert)
    rec = Recorder()
    svc = service(pki_dir, rec, peer_keyring, unauth_verify=verify)
    try:
        with serv.connect() as sock:
            outcome, _ = await svc.handle_detailed(
                accept(uapi.MsgType.CLIENTHELLO, uapi.AuthMode.UNAUTH, "server.test"), sock
            )
            if status == 0:
                tx, rx = rec.layers()
                sock.setblocking(True)
                sock.sendall(tx.seal(b"anon\n"))
                while True:
                    ctype, data = rx.open(read_record(sock))
                    if ctype == 23:
                        break
                assert data == b"anon\n"
    finally:
        serv.stop()
    assert outcome.status == status, outcome
    assert bool(rec.calls) == (status == 0)


@pytest.mark.parametrize(
    "auth", [uapi.AuthMode.X509, uapi.AuthMode.UNAUTH], ids=["x509", "unauthenticated"]
)
async def test_anonymous_client_presents_no_certificate(
    pki_dir: Path, peer_keyring: int, tmp_path: Path, auth: uapi.AuthMode
) -> None:
    """With client.x509.certificate configured, an unauthenticated request (the kernel's
    anonymous ClientHello, NFS ``xprtsec=tls``) still sends no certificate, as tlshd; an
    x509 one (``xprtsec=mtls``, no key serials) sends the configured one. Presenting it
    unasked would authenticate the client to nfsd (XPT_PEER_AUTH). gnutls-serv requires a
    client certificate: a TLS 1.3 client has finished its side before the server refuses,
    so what the server saw is read from its output."""
    d = pki_dir
    serv = x509_serv(
        tmp_path, d, "server", "--x509cafile", str(d / "ca.pem"), "--require-client-cert"
    )
    rec = Recorder()
    svc = service(d, rec, peer_keyring, client_cert=True)
    try:
        with serv.connect() as sock:
            outcome, _ = await svc.handle_detailed(
                accept(uapi.MsgType.CLIENTHELLO, auth, "server.test"), sock
            )
            assert outcome.status == 0, outcome
            sock.setblocking(True)
            tx, rx = rec.layers()
            echoed = b""
            with contextlib.suppress(OSError):  # the refusing server has closed
                sock.sendall(tx.seal(b"ping\n"))
                while True:  # the echo, or the server's alert and its close
                    ctype, data = rx.open(read_record(sock, timeout=5))
                    if ctype == 23:
                        echoed = data
                        break
    finally:
        serv.stop()
    out = serv.output()
    if auth is uapi.AuthMode.UNAUTH:
        assert "Certificate is required" in out and not echoed, out
    else:
        assert echoed == b"ping\n" and "Certificate is required" not in out, out
