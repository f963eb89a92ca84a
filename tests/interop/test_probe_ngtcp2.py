"""quichsd-probe connect (our driver + engine over the userspace QUIC socket) against
Debian's gtlsserver (ngtcp2 + GnuTLS): an independent QUIC stack over UDP on loopback."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pki import make_pki
from userspace_peers import GtlsServer, UdpProxy

pytestmark = pytest.mark.peer

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    make_pki().write(d)
    (d / "htdocs").mkdir()
    (d / "htdocs" / "index.html").write_text("hello\n")
    return d


def gtls(pki: Path, name: str) -> GtlsServer:
    return GtlsServer(pki, pki / f"{name}.pem", pki / f"{name}.key")


@pytest.fixture
def server(pki_dir: Path) -> Iterator[GtlsServer]:
    s = gtls(pki_dir, "server")
    yield s
    s.stop()


def probe(
    pki: Path, port: int, *args: str, cafile: str = "ca.pem"
) -> tuple[int, dict[str, object]]:
    cmd = [
        str(BIN / "quichsd-probe"),
        "connect",
        "127.0.0.1",
        str(port),
        "--sni",
        "server.test",
        "--cafile",
        str(pki / cafile),
        *args,
    ]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    assert len(lines) == 1, (p.stdout, p.stderr)
    return p.returncode, json.loads(lines[0])


@pytest.mark.parametrize(
    ("cipher", "suite"),
    [
        ("AES-128-GCM", "TLS_AES_128_GCM_SHA256"),
        ("AES-256-GCM", "TLS_AES_256_GCM_SHA384"),
        ("AES-128-CCM", "TLS_AES_128_CCM_SHA256"),
        ("CHACHA20-POLY1305", "TLS_CHACHA20_POLY1305_SHA256"),
    ],
)
def test_each_suite(pki_dir: Path, server: GtlsServer, cipher: str, suite: str) -> None:
    rc, res = probe(pki_dir, server.port, "--alpn", "h3", "--ciphers", cipher)
    assert rc == 0 and res["ok"] is True, res
    assert res["cipher"] == suite and res["status"] == 0 and res["alpn"] == "h3"


@pytest.mark.parametrize("group", ["X25519", "SECP256R1"])
def test_each_group(pki_dir: Path, server: GtlsServer, group: str) -> None:
    rc, res = probe(pki_dir, server.port, "--alpn", "h3", "--groups", group)
    assert rc == 0 and res["group"] == group, res


def test_hello_retry_request_from_a_p384_only_server(pki_dir: Path) -> None:
    """The server supports only P-384; our ClientHello carries X25519 and P-256 key shares,
    so it answers with a HelloRetryRequest and we must send a second ClientHello."""
    s = GtlsServer(
        pki_dir,
        pki_dir / "server.pem",
        pki_dir / "server.key",
        "--groups=-GROUP-ALL:+GROUP-SECP384R1",
    )
    try:
        rc, res = probe(pki_dir, s.port, "--alpn", "h3")
        time.sleep(0.3)
        log = s.output()
    finally:
        s.stop()
    assert rc == 0 and res["ok"] is True and res["group"] == "SECP384R1", res
    # the second ClientHello continues the Initial CRYPTO stream after the first one
    offsets = [int(m) for m in re.findall(r"frm rx \d+ Initial CRYPTO\(0x06\) offset=(\d+)", log)]
    assert offsets[0] == 0 and any(o > 0 for o in offsets[1:]), offsets


async def test_750ms_one_way_delay_completes_within_the_deadline(
    pki_dir: Path, server: GtlsServer
) -> None:
    """A 1.5 s round trip (750 ms each way, no loss): the handshake still completes within
    its deadline; the peers' retransmissions on the slow path do not confuse it."""
    proxy = UdpProxy(("127.0.0.1", server.port), delay=0.75)
    port = await proxy.start()
    try:
        rc, res = await asyncio.to_thread(probe, pki_dir, port, "--alpn", "h3", "--timeout", "20")
    finally:
        proxy.close()
    assert rc == 0 and res["ok"] is True, res
    assert float(str(res["ms"])) >= 1500, res  # at least one delayed round trip
    assert proxy.stats["up"] >= 2 and proxy.stats["down"] >= 2


async def test_lossy_corrupting_path_ten_handshakes(pki_dir: Path, server: GtlsServer) -> None:
    """30% loss, 10% one-bit corruption, 5% duplicates, 20 ms each way (fault catalogue
    3.4): every handshake completes. Corrupted packets fail QUIC's AEAD and are dropped
    before TLS sees them; the lost ones are retransmitted."""
    proxy = UdpProxy(
        ("127.0.0.1", server.port), delay=0.02, loss=0.3, corrupt=0.1, dup=0.05, seed=7
    )
    port = await proxy.start()
    try:
        results = [
            await asyncio.to_thread(probe, pki_dir, port, "--alpn", "h3", "--timeout", "20")
            for _ in range(10)
        ]
    finally:
        proxy.close()
    assert [(rc, res["ok"]) for rc, res in results] == [(0, True)] * 10, results
    assert proxy.stats["dropped"] > 0 and proxy.stats["corrupted"] > 0, proxy.stats


def test_resumption_and_0rtt_on_the_second_connection(
    pki_dir: Path, server: GtlsServer, tmp_path: Path
) -> None:
    sess = tmp_path / "s.json"
    rc, first = probe(pki_dir, server.port, "--alpn", "h3", "--session-file", str(sess))
    assert rc == 0 and first["resumed"] is False
    assert sess.exists(), "the ticket must have been received and stored"
    rc, second = probe(
        pki_dir, server.port, "--alpn", "h3", "--session-file", str(sess), "--early-data", "GET /"
    )
    assert rc == 0 and second["resumed"] is True and second["early_data"] is True, second


def test_alpn_mismatch_is_eacces_via_the_peers_0x178(pki_dir: Path, server: GtlsServer) -> None:
    """gtlsserver refuses our ALPN: it closes with 0x178 and we report alert 120, EACCES,
    at once (not at the deadline)."""
    rc, res = probe(pki_dir, server.port, "--alpn", "smb", "--timeout", "8")
    assert rc == 1 and res["ok"] is False
    assert res["status"] == errno.EACCES
    assert "TLS alert 120 (no_application_protocol)" in str(res["error"]), res
    assert float(str(res["ms"])) < 5000
    time.sleep(0.3)
    assert "CONNECTION_CLOSE(0x1c) error_code=CRYPTO_ERROR(0x178)" in server.output()


def test_untrusted_server_certificate_is_eacces(pki_dir: Path) -> None:
    s = gtls(pki_dir, "rogue")
    try:
        rc, res = probe(pki_dir, s.port, "--alpn", "h3")
    finally:
        s.stop()
    assert rc == 1 and res["status"] == errno.EACCES
    assert "issuer" in str(res["error"]).lower() or "signer" in str(res["error"]).lower(), res


def test_silent_peer_times_out_with_etimedout(pki_dir: Path) -> None:
    # a bound UDP socket that never answers: the handshake's deadline must end it
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as hole:
        hole.bind(("127.0.0.1", 0))
        port = hole.getsockname()[1]
        t0 = time.monotonic()
        rc, res = probe(pki_dir, port, "--alpn", "h3", "--timeout", "1.5")
        took = time.monotonic() - t0
    assert rc == 1 and res["status"] == errno.ETIMEDOUT, res
    assert "waiting for ServerHello" in str(res["error"])
    assert took < 30


def test_probe_leaves_no_fds_in_process(pki_dir: Path, server: GtlsServer) -> None:
    """In-process: the driver and the userspace socket give every fd back."""
    import asyncio

    from quichsd.driver import HandshakeRequest, run_handshake
    from quichsd.gnutls.creds import CertificateCredentials
    from quichsd.tls.engine import Role
    from quichsd.userspace.aioquic import UserspaceQuicSocket

    async def once() -> int:
        cc = CertificateCredentials()
        cc.set_trust((pki_dir / "ca.pem").read_bytes())
        sock = await UserspaceQuicSocket.connect(
            "127.0.0.1", server.port, alpns=[b"h3"], server_name="server.test"
        )
        try:
            r = await run_handshake(
                sock, HandshakeRequest(Role.CLIENT, peer_name="server.test", x509=cc, timeout=5)
            )
        finally:
            sock.close()
            await sock.wait_closed()
            cc.close()
        return r.status

    async def main() -> None:
        assert await once() == 0
        before = len(os.listdir("/proc/self/fd"))
        for _ in range(5):
            assert await once() == 0
        assert len(os.listdir("/proc/self/fd")) == before

    asyncio.run(main())
