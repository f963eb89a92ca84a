# SPDX-License-Identifier: GPL-2.0-or-later
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
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from pki import write_peer_dir
from userspace_peers import GtlsServer, UdpProxy

from quichsd.config import parse_config
from quichsd.driver import TlsPolicy
from quichsd.gnutls.features import features
from quichsd.probe_common import daemon_policy
from quichsd.tls.engine import ResumptionKx
from quichsd.uapi import Cipher

pytestmark = pytest.mark.peer

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_peer_dir(tmp_path_factory.mktemp("pki"))


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
    """The second connection resumes and offers early data (the daemon's tls.early_data),
    which gtlsserver accepts. (No --early-data here: gtlsserver speaks HTTP/3 and closes
    the connection on a request stream that is not HTTP/3; see test_probe_peers.py.)"""
    sess = tmp_path / "s.json"
    rc, first = probe(pki_dir, server.port, "--alpn", "h3", "--session-file", str(sess))
    assert rc == 0 and first["resumed"] is False and first["early_data"] is False
    assert sess.exists(), "the ticket must have been received and stored"
    rc, second = probe(pki_dir, server.port, "--alpn", "h3", "--session-file", str(sess))
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
    assert str(res["error"]) == str(res["error"]).strip(), res  # GnuTLS's text ends in " "
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


# -- what our ClientHello offers (RFC 8446 §4.1.2), decoded here by hand ---------------------
def _vector(buf: bytes, pos: int, size: int) -> tuple[bytes, int]:
    n = int.from_bytes(buf[pos : pos + size], "big")
    return buf[pos + size : pos + size + n], pos + size + n


def hello_suites_and_shares(data: bytes) -> tuple[list[int], list[int], list[int]]:
    """cipher_suites, supported_groups and the key_share groups of a ClientHello."""
    assert data[0] == 1, "not a ClientHello"
    body = data[4 : 4 + int.from_bytes(data[1:4], "big")]
    pos = 2 + 32  # legacy_version, random
    _sid, pos = _vector(body, pos, 1)
    suites, pos = _vector(body, pos, 2)
    _compression, pos = _vector(body, pos, 1)
    exts, _ = _vector(body, pos, 2)
    groups: list[int] = []
    shares: list[int] = []
    i = 0
    while i < len(exts):
        etype = int.from_bytes(exts[i : i + 2], "big")
        ext, i = _vector(exts, i + 2, 2)
        if etype == 10:  # supported_groups
            lst, _ = _vector(ext, 0, 2)
            groups = [int.from_bytes(lst[k : k + 2], "big") for k in range(0, len(lst), 2)]
        elif etype == 51:  # key_share
            lst, _ = _vector(ext, 0, 2)
            k = 0
            while k < len(lst):
                shares.append(int.from_bytes(lst[k : k + 2], "big"))
                _key, k = _vector(lst, k + 2, 2)
    pairs = [int.from_bytes(suites[k : k + 2], "big") for k in range(0, len(suites), 2)]
    return pairs, groups, shares


def our_client_hello(pki: Path, port: int, policy: TlsPolicy) -> tuple[bytes, int]:
    """Our real ClientHello bytes (what the engine hands the socket at INITIAL) in a
    handshake with gtlsserver, and the handshake's status."""
    from quichsd.driver import HandshakeRequest, run_handshake
    from quichsd.gnutls.creds import CertificateCredentials
    from quichsd.tls.engine import Role
    from quichsd.uapi import CryptoLevel
    from quichsd.userspace.aioquic import UserspaceQuicSocket

    initial: list[bytes] = []

    async def run() -> int:
        cc = CertificateCredentials()
        cc.set_trust((pki / "ca.pem").read_bytes())
        sock = await UserspaceQuicSocket.connect(
            "127.0.0.1", port, alpns=[b"h3"], server_name="server.test"
        )
        send = sock.sendmsg

        def recording(bufs: Any, anc: Any = (), *rest: Any) -> int:
            anc = list(anc)
            if anc and anc[0][2][:1] == bytes([CryptoLevel.INITIAL]):
                initial.append(b"".join(bytes(b) for b in bufs))
            return send(bufs, anc, *rest)

        sock.sendmsg = recording  # type: ignore[method-assign]
        try:
            req = HandshakeRequest(
                Role.CLIENT, peer_name="server.test", x509=cc, timeout=5, policy=policy
            )
            return (await run_handshake(sock, req)).status
        finally:
            sock.close()
            await sock.wait_closed()
            cc.close()

    status = asyncio.run(run())
    return b"".join(initial), status


@pytest.mark.parametrize("kx", ["psk_dhe", "psk"])
def test_our_client_hello_offers_tls13_suites_only(
    pki_dir: Path, server: GtlsServer, kx: str
) -> None:
    """QUIC is TLS 1.3 only (RFC 9001 §4.2): the ClientHello lists exactly the configured
    TLS 1.3 suites, in order, and no TLS 1.2 suite, whichever resumption key exchange."""
    policy = replace(daemon_policy(), resumption_kx=ResumptionKx(kx))
    data, status = our_client_hello(pki_dir, server.port, policy)
    suites, _groups, _shares = hello_suites_and_shares(data)
    assert status == 0
    # tls.ciphers default: AES-128-GCM, AES-256-GCM, CHACHA20-POLY1305, AES-128-CCM
    assert suites == [0x1301, 0x1302, 0x1303, 0x1304], [hex(s) for s in suites]


def test_our_client_hello_with_one_cipher(pki_dir: Path, server: GtlsServer) -> None:
    policy = replace(daemon_policy(), ciphers=(Cipher.CHACHA20_POLY1305,))
    data, status = our_client_hello(pki_dir, server.port, policy)
    assert status == 0 and hello_suites_and_shares(data)[0] == [0x1303]


def test_direct_probe_uses_the_daemons_groups(pki_dir: Path, server: GtlsServer) -> None:
    """Without --groups the probe offers the daemon's tls.groups (X25519 first, its key
    share first), so gtlsserver settles on X25519, as it would with the daemon."""
    names = {0x1D: "X25519", 0x17: "SECP256R1", 0x18: "SECP384R1", 0x19: "SECP521R1"}
    data, status = our_client_hello(pki_dir, server.port, daemon_policy())
    _suites, groups, shares = hello_suites_and_shares(data)
    want = parse_config("", "c.yaml", available_groups=features().groups).tls.groups
    assert status == 0 and [names.get(g, hex(g)) for g in groups] == list(want)
    assert names[shares[0]] == want[0] == "X25519"
    rc, res = probe(pki_dir, server.port, "--alpn", "h3")
    assert rc == 0 and res["group"] == "X25519", res


def test_verbose_report_against_gtlsserver(
    pki_dir: Path, server: GtlsServer, tmp_path: Path
) -> None:
    """-v: the chain, what was negotiated, both transport parameter sets, the timing;
    stdout still holds only the JSON line."""
    sess = str(tmp_path / "s.json")
    cmd = [str(BIN / "quichsd-probe"), "connect", "127.0.0.1", str(server.port), "--sni",
           "server.test", "--cafile", str(pki_dir / "ca.pem"), "--alpn", "h3", "-v"]  # fmt: skip
    full = subprocess.run([*cmd, "--session-file", sess], capture_output=True, text=True)
    resumed = subprocess.run([*cmd, "--session-file", sess], capture_output=True, text=True)
    assert full.returncode == 0 and resumed.returncode == 0, (full.stderr, resumed.stderr)
    (line,) = resumed.stdout.splitlines()
    assert json.loads(line)["resumed"] is True
    chain, err = full.stderr, resumed.stderr
    assert "- Peer certificate chain (1):" in chain
    assert "[0] subject: CN=server.test" in chain and "issuer: CN=quichsd test CA" in chain
    assert "SANs: DNS:server.test, DNS:localhost, IP:127.0.0.1" in chain
    assert re.search(r"key: EC secp256r1|key: RSA \d+ bits|key: Ed25519", chain), chain
    assert re.search(r"valid: \d{4}-\d\d-\d\d \S+ UTC to \d{4}-\d\d-\d\d \S+ UTC", chain)
    assert "resumption: no" in chain and "early data: offered, no answer" not in chain
    assert "- Peer certificate chain: none received" in err  # resumed: no Certificate
    for want in ("version: TLS 1.3", "cipher suite: TLS_AES_128_GCM_SHA256", "group: X25519",
                 "ALPN: h3", "SNI: server.test", "HelloRetryRequest: no", "resumption: yes",
                 "early data: offered, accepted"):  # fmt: skip
        assert want in err, (want, err)
    ours = err.split("- Transport parameters (our")[1].split("- Transport parameters (peer")[0]
    peers = err.split("- Transport parameters (peer's")[1].split("- Timing")[0]
    assert "initial_max_data: 1048576" in ours and "original_destination" not in ours
    for server_only in ("original_destination_connection_id: ", "stateless_reset_token: "):
        assert server_only in peers, peers
    assert "max_idle_timeout: 30000 ms" in peers
    phases = ["first flight sent", "ServerHello received", "handshake keys installed",
              "server Certificate received", "Finished, 1-RTT keys installed",
              "session ticket stored"]  # fmt: skip
    timing = chain.split("- Timing")[1]
    at = [float(m[1]) for p in phases if (m := re.search(rf"([\d.]+)  {p}\n", timing))]
    assert len(at) == len(phases) and at == sorted(at), timing


def test_verbose_names_a_hello_retry_request(pki_dir: Path) -> None:
    s = GtlsServer(
        pki_dir,
        pki_dir / "server.pem",
        pki_dir / "server.key",
        "--groups=-GROUP-ALL:+GROUP-SECP384R1",
    )
    try:
        p = subprocess.run(
            [str(BIN / "quichsd-probe"), "connect", "127.0.0.1", str(s.port), "--sni",
             "server.test", "--cafile", str(pki_dir / "ca.pem"), "--alpn", "h3", "-v"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    finally:
        s.stop()
    assert p.returncode == 0, p.stderr
    assert "HelloRetryRequest: yes" in p.stderr and "group: SECP384R1" in p.stderr
    assert "HelloRetryRequest received" in p.stderr
