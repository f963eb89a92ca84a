# SPDX-License-Identifier: GPL-2.0-or-later
"""Issue 11 items 1-3: what a peer certificate must be for, and for whom, against real peers.

Item 1: the key purpose (EKU) -- serverAuth for a server, clientAuth for a client.
Item 2: a request without a peer name verifies the peer's IP address, else is refused.
Item 3: peer names with NUL or control bytes are refused; an IDN is sent and verified as
its A-label.

Peers: ngtcp2's gtlsserver / gtlsclient and aioquic, with certificates made by tests/pki.py.
Our side runs as quichsd-probe (direct: the engine in the probe process) and through a real
daemon (socket-ops), which must keep serving a canary handshake after each refusal.
"""

from __future__ import annotations

import asyncio
import errno
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pki import IDN_A_LABEL, IDN_U_LABEL, write_peer_dir
from quichsd_proc import QuichsdProcess, canary, via_connect
from userspace_peers import GtlsServer, aioquic_echo_server, free_port, gtlsclient

from quichsd.driver import HandshakeRequest, run_handshake
from quichsd.probe_common import certificate_credentials
from quichsd.tls.engine import Role
from quichsd.userspace.aioquic import UserspaceQuicSocket

pytestmark = pytest.mark.peer

PROBE = str(Path(sys.executable).parent / "quichsd-probe")
PURPOSE = "does not match the intended purpose"
REJECTED = f"The certificate is NOT trusted. The certificate chain {PURPOSE}"


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_peer_dir(tmp_path_factory.mktemp("pki11"))


def gtls(pki: Path, name: str) -> GtlsServer:
    return GtlsServer(pki, pki / f"{name}.pem", pki / f"{name}.key")


@pytest.fixture(scope="module")
def good_server(pki_dir: Path) -> Iterator[GtlsServer]:
    """gtlsserver with the good server.test certificate: the canary's peer."""
    s = gtls(pki_dir, "server")
    yield s
    s.stop()


def daemon_config(pki: Path, extra: str = "") -> str:
    return (
        f"client:\n  x509:\n    truststore: {pki / 'ca.pem'}\n{extra}"
        f"server:\n  x509:\n    certificate: {pki / 'server.pem'}\n"
        f"    private_key: {pki / 'server.key'}\n"
        f"    truststore: {pki / 'ca.pem'}\n  client_certificate: require\n"
    )


@pytest.fixture(scope="module")
def daemon(pki_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[QuichsdProcess]:
    """The default policy: name-less verification is not allowed."""
    d = QuichsdProcess(tmp_path_factory.mktemp("d11"), daemon_config(pki_dir))
    yield d
    d.stop()


def probe_connect(pki: Path, port: int, *args: str) -> tuple[int, dict[str, object]]:
    cmd = [PROBE, "connect", "127.0.0.1", str(port), "--cafile", str(pki / "ca.pem"), *args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    assert len(lines) == 1, (p.stdout, p.stderr)
    return p.returncode, json.loads(lines[0])


# -- item 1: key purpose ------------------------------------------------------------------
def test_issue11_item1_probe_client_refuses_a_server_cert_for_clientauth_only(
    pki_dir: Path, good_server: GtlsServer
) -> None:
    """issue 11 item 1: as a client (probe path), a server certificate whose EKU is
    clientAuth only is refused; the same server name with serverAuth is accepted."""
    srv = gtls(pki_dir, "server_eku_client")
    try:
        rc, res = probe_connect(pki_dir, srv.port, "--sni", "server.test", "--alpn", "h3")
    finally:
        srv.stop()
    assert rc == 1 and res["status"] == errno.EACCES, res
    assert PURPOSE in str(res["error"]), res
    rc, res = probe_connect(pki_dir, good_server.port, "--sni", "server.test", "--alpn", "h3")
    assert rc == 0 and res["ok"] is True, res


async def test_issue11_item1_daemon_client_refuses_a_server_cert_for_clientauth_only(
    pki_dir: Path, daemon: QuichsdProcess, good_server: GtlsServer
) -> None:
    """issue 11 item 1: the daemon as a client (socket-ops path) refuses a server
    certificate whose EKU is clientAuth only, logs why, and keeps serving."""
    srv = gtls(pki_dir, "server_eku_client")
    try:
        res = await via_connect(daemon, srv.port, "server.test")
    finally:
        srv.stop()
    assert res.status == errno.EACCES and PURPOSE in str(res.error), res
    daemon.wait_log(f"done: status 13 EACCES (peer certificate rejected: {REJECTED}")
    await canary(daemon, good_server.port)


async def test_issue11_item1_probe_server_refuses_a_client_cert_for_serverauth_only(
    pki_dir: Path, tmp_path: Path
) -> None:
    """issue 11 item 1: as a server requiring client certificates (probe path), a client
    certificate whose EKU is serverAuth only is refused; a clientAuth one is accepted."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        PROBE, "serve", str(port), "--cert", str(pki_dir / "server.pem"),
        "--key", str(pki_dir / "server.key"), "--alpn", "h3", "--count", "2",
        "--timeout", "5", "--require-client-cert", "--cafile", str(pki_dir / "ca.pem"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    assert b"listening on" in await asyncio.wait_for(proc.stderr.readline(), 20)
    bad = await gtlsclient(
        port, tmp_path, "--cert", str(pki_dir / "client_eku_server.pem"),
        "--key", str(pki_dir / "client_eku_server.key"),
    )  # fmt: skip
    good = await gtlsclient(
        port, tmp_path, "--cert", str(pki_dir / "client.pem"), "--key", str(pki_dir / "client.key")
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    res = [json.loads(x) for x in out.decode().splitlines() if x.startswith("{")]
    assert [r["ok"] for r in res] == [False, True], res
    assert res[0]["status"] == errno.EACCES and PURPOSE in res[0]["error"], res
    # TLS 1.3: the client is done when it sends Finished; then the server closes on it
    assert "error_code=CRYPTO_ERROR(0x12a)" in bad, bad[-3000:]  # bad_certificate
    assert "QUIC handshake has completed" in good


async def test_issue11_item1_daemon_server_refuses_a_client_cert_for_serverauth_only(
    pki_dir: Path, daemon: QuichsdProcess, tmp_path: Path
) -> None:
    """issue 11 item 1: the daemon as a server with client_certificate: require (socket-ops
    path) refuses a client certificate whose EKU is serverAuth only, then serves a good one."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        PROBE, "serve", str(port), "--alpn", "h3", "--count", "2", "--timeout", "5",
        "--via", str(daemon.sock),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    assert b"listening on" in await asyncio.wait_for(proc.stderr.readline(), 20)
    bad = await gtlsclient(
        port, tmp_path, "--cert", str(pki_dir / "client_eku_server.pem"),
        "--key", str(pki_dir / "client_eku_server.key"),
    )  # fmt: skip
    good = await gtlsclient(
        port, tmp_path, "--cert", str(pki_dir / "client.pem"), "--key", str(pki_dir / "client.key")
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    res = [json.loads(x) for x in out.decode().splitlines() if x.startswith("{")]
    assert [r["ok"] for r in res] == [False, True], res
    assert res[0]["status"] == errno.EACCES and PURPOSE in res[0]["error"], res
    assert "error_code=CRYPTO_ERROR(0x12a)" in bad, bad[-3000:]  # bad_certificate
    assert "QUIC handshake has completed" in good
    assert "(SERVERHELLO, X509, socket-ops) done: status 13 EACCES" in daemon.log()


# -- item 2: no peer name -----------------------------------------------------------------
async def test_issue11_item2_daemon_refuses_a_request_without_name_or_address(
    pki_dir: Path, daemon: QuichsdProcess, good_server: GtlsServer
) -> None:
    """issue 11 item 2: a socket-ops request without a peer name (and so without a peer
    address) is refused with EINVAL instead of accepting any trusted certificate."""
    srv = gtls(pki_dir, "server_public")
    try:
        res = await via_connect(daemon, srv.port, None)
    finally:
        srv.stop()
    assert res.status == errno.EINVAL, res
    assert "no peer name and no peer address" in str(res.error), res
    daemon.wait_log("(CLIENTHELLO, X509, socket-ops) done: status 22 EINVAL (no peer name")
    await canary(daemon, good_server.port)


async def test_issue11_item2_nameless_verification_only_when_configured(
    pki_dir: Path, tmp_path: Path
) -> None:
    """issue 11 item 2: client.verify_server_without_name: true is the explicit opt-in to
    chain-only verification (any certificate the truststore vouches for)."""
    d = QuichsdProcess(tmp_path, daemon_config(pki_dir, "  verify_server_without_name: true\n"))
    srv = gtls(pki_dir, "server_public")
    try:
        res = await via_connect(d, srv.port, None)
        assert res.status == 0, (res, d.log())
        rogue = gtls(pki_dir, "rogue")  # the chain is still verified
        try:
            res = await via_connect(d, rogue.port, None)
        finally:
            rogue.stop()
        assert res.status == errno.EACCES, res
    finally:
        srv.stop()
        d.stop()


@pytest.mark.parametrize(
    ("cert", "ok"),
    [("server_ip_only", True), ("server_other_ip", False), ("server_public", False)],
)
async def test_issue11_item2_no_name_verifies_the_peer_ip_address(
    pki_dir: Path, cert: str, ok: bool
) -> None:
    """issue 11 item 2: without a peer name, the server certificate must carry the IP
    address the socket is connected to (IP SAN); another address or a DNS-only certificate
    fails (before: no name was checked at all)."""
    srv = gtls(pki_dir, cert)
    cc = certificate_credentials(str(pki_dir / "ca.pem"), None, None)
    sock = await UserspaceQuicSocket.connect("127.0.0.1", srv.port, alpns=[b"h3"])
    try:
        res = await run_handshake(sock, HandshakeRequest(Role.CLIENT, x509=cc, timeout=5))
    finally:
        sock.close()
        await sock.wait_closed()
        cc.close()
        srv.stop()
    if ok:
        assert res.status == 0, res.error
    else:
        assert res.status == errno.EACCES, res.error
        assert "does not match the expected. (expected address 127.0.0.1)" in str(res.error)


@pytest.mark.parametrize(
    ("cert", "ok"),
    [("server_ip_only", True), ("server_other_ip", False), ("server_public", False)],
)
def test_issue11_item2_ip_literal_peer_name_is_matched_against_ip_sans(
    pki_dir: Path, cert: str, ok: bool
) -> None:
    """issue 11 item 2: a peer name that is an IP literal (the probe's host 127.0.0.1 and
    no --sni) is verified against the certificate's IP address SANs, not as a DNS name:
    gtlsserver's IP-only certificate for 127.0.0.1 passes, 127.0.0.2 or a DNS-only one
    fails with EACCES naming the name it expected."""
    srv = gtls(pki_dir, cert)
    try:
        rc, res = probe_connect(pki_dir, srv.port, "--alpn", "h3")
    finally:
        srv.stop()
    if ok:
        assert rc == 0 and res["ok"] is True, res
    else:
        assert rc == 1 and res["status"] == errno.EACCES, res
        assert "(expected '127.0.0.1')" in str(res["error"]), res


# -- item 3: peer names -------------------------------------------------------------------
@pytest.mark.parametrize("name", ["server.test\x00.evil.test", "server.test\n", "server\x7f.test"])
async def test_issue11_item3_daemon_refuses_names_with_control_bytes(
    daemon: QuichsdProcess, good_server: GtlsServer, name: str
) -> None:
    """issue 11 item 3: a peer name with a NUL or another control byte is refused (EINVAL,
    the name escaped in the reason), not verified up to the NUL; the daemon keeps serving."""
    res = await via_connect(daemon, good_server.port, name)
    assert res.status == errno.EINVAL, res
    assert "contains control characters" in str(res.error), res
    assert repr(name)[1:-1] in str(res.error)  # escaped, as \x00 / \n / \x7f
    log = daemon.log()
    assert "\nserver.test\n" not in log and "\x00" not in log and "\x7f" not in log
    await canary(daemon, good_server.port)


def test_issue11_item3_probe_refuses_a_control_byte_in_sni(
    pki_dir: Path, good_server: GtlsServer
) -> None:
    """issue 11 item 3: the probe path refuses it too (EINVAL, nothing sent)."""
    rc, res = probe_connect(pki_dir, good_server.port, "--sni", "server.test\t", "--alpn", "h3")
    assert rc == 1 and res["status"] == errno.EINVAL, res
    assert "server.test\\t" in str(res["error"]), res


async def test_issue11_item3_idn_is_sent_and_verified_as_its_a_label(
    pki_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """issue 11 item 3: the U-label bücher.test goes out as the SNI xn--bcher-kva.test (all
    of its bytes: it used to be cut to its length in characters) and verifies against a
    certificate for the A-label; aioquic is the server and records the SNI it received."""
    import aioquic.tls

    seen: list[str | None] = []
    pull = aioquic.tls.pull_client_hello

    def recording(buf: aioquic.tls.Buffer) -> aioquic.tls.ClientHello:
        hello = pull(buf)
        seen.append(hello.server_name)
        return hello

    monkeypatch.setattr(aioquic.tls, "pull_client_hello", recording)
    port = free_port()
    server, log = await aioquic_echo_server(
        port, pki_dir / "server_idn.pem", pki_dir / "server_idn.key"
    )
    try:
        proc = await asyncio.create_subprocess_exec(
            PROBE, "connect", "127.0.0.1", str(port), "--sni", IDN_U_LABEL, "--alpn", "echo",
            "--cafile", str(pki_dir / "ca.pem"), "--timeout", "5",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        server.close()
    (res,) = [json.loads(x) for x in out.decode().splitlines() if x.startswith("{")]
    assert proc.returncode == 0 and res["ok"] is True, (res, err)
    assert seen == [IDN_A_LABEL]
    assert log.completed
