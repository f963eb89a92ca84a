# SPDX-License-Identifier: GPL-2.0-or-later
"""quichsd-probe as a process: `serve` accepting ngtcp2's gtlsclient and an aioquic client
(aioquic's own TLS), and `connect` to an aioquic server. JSON lines and exit codes are
asserted, plus what the independent peer logged."""

from __future__ import annotations

import asyncio
import errno
import json
import re
import ssl
import sys
from pathlib import Path

import pytest
from aioquic.asyncio import connect as aq_connect
from aioquic.quic.configuration import QuicConfiguration
from pki import make_pki
from userspace_peers import EchoLog, UdpProxy, aioquic_echo_server, free_port, gtlsclient

pytestmark = pytest.mark.peer

PROBE = str(Path(sys.executable).parent / "quichsd-probe")


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    make_pki().write(d)
    return d


class Serve:
    """`quichsd-probe serve` in a subprocess; results are its JSON lines."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc = proc
        self.port = port

    @classmethod
    async def start(cls, pki: Path, count: int, *extra: str, alpn: str = "h3") -> Serve:
        port = free_port()
        proc = await asyncio.create_subprocess_exec(
            PROBE,
            "serve",
            str(port),
            "--cert",
            str(pki / "server.pem"),
            "--key",
            str(pki / "server.key"),
            "--alpn",
            alpn,
            "--count",
            str(count),
            "--timeout",
            "5",
            *extra,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stderr is not None
        line = await asyncio.wait_for(proc.stderr.readline(), 20)
        assert b"listening on" in line, line
        return cls(proc, port)

    async def results(self) -> tuple[int, list[dict[str, object]]]:
        out, _err = await asyncio.wait_for(self.proc.communicate(), 30)
        lines = [json.loads(x) for x in out.decode().splitlines() if x.startswith("{")]
        assert self.proc.returncode is not None
        return self.proc.returncode, lines


async def test_serve_accepts_gtlsclient_then_resumes_with_0rtt(
    pki_dir: Path, tmp_path: Path
) -> None:
    srv = await Serve.start(pki_dir, 2)
    sess = ["--session-file=" + str(tmp_path / "s.pem"), "--tp-file=" + str(tmp_path / "tp.bin")]
    first = await gtlsclient(srv.port, tmp_path, *sess)
    second = await gtlsclient(srv.port, tmp_path, *sess)
    rc, lines = await srv.results()
    assert "QUIC handshake has completed" in first and "QUIC handshake has completed" in second
    assert "Early data was rejected" not in second
    assert rc == 0 and [x["ok"] for x in lines] == [True, True], lines
    assert lines[0]["resumed"] is False and lines[1]["resumed"] is True
    assert lines[1]["early_data"] is True


async def test_serve_reports_no_early_data_when_the_client_sent_none(
    pki_dir: Path, tmp_path: Path
) -> None:
    """gtlsclient --disable-early-data resumes and still offers early data in its
    ClientHello (GnuTLS accepts the offer) but sends no 0-RTT packet: our server reports
    early_data false, and -v says why."""
    srv = await Serve.start(pki_dir, 2, "-v")
    sess = ["--session-file=" + str(tmp_path / "s.pem"), "--tp-file=" + str(tmp_path / "tp.bin")]
    await gtlsclient(srv.port, tmp_path, *sess)
    second = await gtlsclient(srv.port, tmp_path, *sess, "--disable-early-data")
    assert srv.proc.stderr is not None
    out, err = await asyncio.wait_for(srv.proc.communicate(), 30)
    lines = [json.loads(x) for x in out.decode().splitlines() if x.startswith("{")]
    assert "QUIC handshake has completed" in second and "type=0RTT" not in second
    assert srv.proc.returncode == 0 and lines[1]["resumed"] is True, lines
    assert lines[1]["early_data"] is False, lines
    assert "early data: offered, accepted; 0 0-RTT packet(s) received" in err.decode()


async def test_serve_sends_hello_retry_request_to_gtlsclient(pki_dir: Path, tmp_path: Path) -> None:
    """We accept only P-384; gtlsclient's first ClientHello carries an X25519 key share, so
    our server answers with a HelloRetryRequest and completes on the second ClientHello."""
    srv = await Serve.start(pki_dir, 1, "--groups", "SECP384R1")
    log = await gtlsclient(srv.port, tmp_path)
    rc, lines = await srv.results()
    assert "QUIC handshake has completed" in log, log[-3000:]
    assert rc == 0 and lines[0]["ok"] is True and lines[0]["group"] == "SECP384R1", lines
    # gtlsclient sent its Initial CRYPTO stream twice: the first ClientHello, then the second
    offsets = [int(m) for m in re.findall(r"frm tx \d+ Initial CRYPTO\(0x06\) offset=(\d+)", log)]
    assert offsets[0] == 0 and any(o > 0 for o in offsets[1:]), offsets


async def test_serve_over_a_lossy_corrupting_path(pki_dir: Path, tmp_path: Path) -> None:
    """gtlsclient -> 30% loss, 10% corruption, 5% duplicates, 20 ms -> our server: all
    five handshakes complete (fault catalogue 3.4). At most two datagrams in a row are
    impaired per direction: with unbounded bursts a client's first Initials can all be lost
    until gtlsclient's own idle timeout ends it, which would test the dice, not our server."""
    srv = await Serve.start(pki_dir, 5, "--timeout", "20")
    proxy = UdpProxy(
        ("127.0.0.1", srv.port),
        delay=0.02,
        loss=0.3,
        corrupt=0.1,
        dup=0.05,
        max_burst=2,
        seed=3,
    )
    port = await proxy.start()
    try:
        # our serve closes each connection after the handshake and sends that close once;
        # if the path loses it, gtlsclient only stops at its idle timeout (8 s here, which
        # also bounds its handshake: 1 s + 2 s + 4 s of retransmission timers fit in it)
        logs = [await gtlsclient(port, tmp_path, "--timeout=8s", timeout=40) for _ in range(5)]
        rc, lines = await srv.results()
    finally:
        proxy.close()
    assert all("QUIC handshake has completed" in log for log in logs)
    assert rc == 0 and [x["ok"] for x in lines] == [True] * 5, lines
    assert proxy.stats["dropped"] > 0 and proxy.stats["corrupted"] > 0, proxy.stats


async def test_serve_client_vanishing_after_our_flight_is_etimedout(
    pki_dir: Path, tmp_path: Path
) -> None:
    """Only gtlsclient's first datagram (its ClientHello) gets through: it completes on our
    flight, but its Finished never arrives, so our server ends at its deadline with
    ETIMEDOUT, naming what it waited for (fault catalogue 2.5)."""
    srv = await Serve.start(pki_dir, 1, "--timeout", "2")
    proxy = UdpProxy(("127.0.0.1", srv.port), blackhole_after=1)
    port = await proxy.start()
    try:
        log = await gtlsclient(port, tmp_path, "--timeout=3s", timeout=20)
        rc, lines = await srv.results()
    finally:
        proxy.close()
    assert "QUIC handshake has completed" in log, log[-3000:]
    assert rc == 1 and lines[0]["status"] == errno.ETIMEDOUT, lines
    assert lines[0]["error"] == "deadline of 2 s passed while waiting for the peer's Finished"
    assert 2000 <= float(str(lines[0]["ms"])) < 5000, lines


async def test_serve_alpn_mismatch_gtlsclient_sees_0x178(pki_dir: Path, tmp_path: Path) -> None:
    srv = await Serve.start(pki_dir, 1, alpn="smb")
    log = await gtlsclient(srv.port, tmp_path)
    rc, lines = await srv.results()
    assert rc == 1 and lines[0]["status"] == errno.EACCES
    assert "no common application protocol" in str(lines[0]["error"])
    assert "CONNECTION_CLOSE(0x1c) error_code=CRYPTO_ERROR(0x178)" in log, log[-3000:]
    assert "QUIC handshake has completed" not in log


async def test_serve_requires_client_cert(pki_dir: Path, tmp_path: Path) -> None:
    srv = await Serve.start(
        pki_dir, 2, "--require-client-cert", "--cafile", str(pki_dir / "ca.pem")
    )
    with_cert = await gtlsclient(
        srv.port,
        tmp_path,
        "--cert",
        str(pki_dir / "client.pem"),
        "--key",
        str(pki_dir / "client.key"),
    )
    without = await gtlsclient(srv.port, tmp_path)
    rc, lines = await srv.results()
    assert "QUIC handshake has completed" in with_cert
    assert rc == 1 and lines[0]["ok"] is True and lines[1]["ok"] is False, lines
    assert lines[1]["status"] == errno.EACCES
    assert "error_code=CRYPTO_ERROR(0x174)" in without, without[-3000:]  # certificate_required


async def test_serve_accepts_an_aioquic_client_with_its_own_tls(pki_dir: Path) -> None:
    srv = await Serve.start(pki_dir, 1, alpn="echo")
    cfg = QuicConfiguration(is_client=True, alpn_protocols=["echo"], server_name="server.test")
    cfg.load_verify_locations(cafile=str(pki_dir / "ca.pem"))
    cfg.verify_mode = ssl.CERT_REQUIRED
    async with aq_connect("127.0.0.1", srv.port, configuration=cfg) as client:
        await client.wait_connected()
        assert client._quic.tls.alpn_negotiated == "echo"
        await asyncio.wait_for(client.ping(), 5)  # answered only once the server is done
    rc, lines = await srv.results()
    assert rc == 0 and lines[0]["ok"] is True and lines[0]["alpn"] == "echo", lines


async def test_connect_to_an_aioquic_server_with_its_own_tls(pki_dir: Path) -> None:
    port = free_port()
    server, log = await aioquic_echo_server(port, pki_dir / "server.pem", pki_dir / "server.key")
    try:
        proc = await asyncio.create_subprocess_exec(
            PROBE,
            "connect",
            "127.0.0.1",
            str(port),
            "--alpn",
            "echo",
            "--sni",
            "server.test",
            "--cafile",
            str(pki_dir / "ca.pem"),
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        server.close()
    res = json.loads(out.decode().splitlines()[-1])
    assert proc.returncode == 0 and res["ok"] is True and res["alpn"] == "echo", res
    assert log.completed and log.completed[0].alpn_protocol == "echo"


async def probe_connect(pki: Path, port: int, *args: str) -> tuple[int, dict[str, object], str]:
    proc = await asyncio.create_subprocess_exec(
        PROBE, "connect", "127.0.0.1", str(port), "--alpn", "echo", "--sni", "server.test",
        "--cafile", str(pki / "ca.pem"), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    (line,) = [x for x in out.decode().splitlines() if x.startswith("{")]
    assert proc.returncode is not None
    return proc.returncode, json.loads(line), err.decode()


@pytest.fixture
def refuse_early_data(monkeypatch: pytest.MonkeyPatch) -> None:
    """aioquic's server (in this process) ignores the ClientHello's early_data extension:
    it resumes the session but rejects 0-RTT, answering with EncryptedExtensions without
    early_data and dropping the 0-RTT packets (RFC 9001 §4.6.2)."""
    import aioquic.tls

    original = aioquic.tls.pull_client_hello

    def without_early_data(buf: aioquic.tls.Buffer) -> aioquic.tls.ClientHello:
        hello = original(buf)
        hello.early_data = False
        return hello

    monkeypatch.setattr(aioquic.tls, "pull_client_hello", without_early_data)


async def _resume_with_early_data(
    pki: Path, tmp_path: Path
) -> tuple[dict[str, object], UdpProxy, EchoLog, str]:
    """First connection stores a session; the second resumes through a proxy that notes
    the QUIC packet types, sending --early-data."""
    port = free_port()
    server, log = await aioquic_echo_server(port, pki / "server.pem", pki / "server.key")
    sess = str(tmp_path / "s.json")
    proxy = UdpProxy(("127.0.0.1", port))
    try:
        rc, first, _ = await probe_connect(pki, port, "--session-file", sess)
        assert rc == 0 and first["resumed"] is False
        proxy_port = await proxy.start()
        rc, second, err = await probe_connect(
            pki, proxy_port, "--session-file", sess, "--early-data", "hello", "-v"
        )
        assert rc == 0 and second["ok"] is True and second["resumed"] is True, (second, err)
        await asyncio.sleep(0.2)
    finally:
        proxy.close()
        server.close()
    return second, proxy, log, err


async def test_connect_early_data_goes_in_0rtt_packets(pki_dir: Path, tmp_path: Path) -> None:
    """--early-data is sent before the handshake completes: the proxy sees 0-RTT long-header
    packets (type 1) from the client, and aioquic's server accepted and received it."""
    res, proxy, log, err = await _resume_with_early_data(pki_dir, tmp_path)
    assert "0-RTT" in proxy.up_types, proxy.up_types
    assert proxy.up_types.index("0-RTT") < proxy.up_types.index("1-RTT")  # before the handshake
    assert res["early_data"] is True
    assert log.completed[-1].early_data_accepted is True
    assert bytes(log.data) == b"hello"
    assert "early data: offered, accepted; data sent in 0-RTT" in err, err


async def test_connect_early_data_rejected_falls_back_to_1rtt(
    pki_dir: Path, tmp_path: Path, refuse_early_data: None
) -> None:
    """A server that refuses 0-RTT: early_data is false, and the text the client sent in
    0-RTT reaches the server once, again in 1-RTT, at once (not after loss detection)."""
    res, proxy, log, err = await _resume_with_early_data(pki_dir, tmp_path)
    assert "0-RTT" in proxy.up_types, proxy.up_types
    assert res["early_data"] is False and res["resumed"] is True, res
    assert log.completed[-1].early_data_accepted is False
    assert log.completed[-1].session_resumed is True
    assert bytes(log.data) == b"hello"
    assert "rejected by the server, sent again in 1-RTT" in err, err
    assert "not acknowledged" not in err
