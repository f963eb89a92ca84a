# SPDX-License-Identifier: GPL-2.0-or-later
"""Metrics: counters fed by the netlink agent (FakeKernel seam), the HTTP endpoint over a
real TCP socket, and the real `quichsd` process serving GET /metrics after a unix-service
handshake against ngtcp2's gtlsserver; scrapes of the real daemon are read with
prometheus_client's own parser."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from pki import make_pki
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).parents[1] / "netlink"))
sys.path.insert(0, str(Path(__file__).parents[1] / "interop"))
from test_nlagent import (  # noqa: E402
    UDP,
    FakeKernel,
    fd_count,
    never_called,
    psk_reply,
    running,
    udp_fd,
    until,
)
from userspace_peers import GtlsServer  # noqa: E402

from quichsd import __version__, metrics, metrics_http  # noqa: E402
from quichsd.config import ListenAddress, MetricsSettings  # noqa: E402
from quichsd.gnutls._lib import version as gnutls_version  # noqa: E402
from quichsd.metrics import Counter, Registry  # noqa: E402
from quichsd.metrics_export import Exposition, registry  # noqa: E402
from quichsd.metrics_http import MetricsEndpoint, MetricsServer  # noqa: E402
from quichsd.netlink import AcceptRequest, HandshakeAgent, HandshakeOutcome  # noqa: E402
from quichsd.unix import codec  # noqa: E402

BIN = Path(sys.executable).parent


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- counters moved by the agent ----------------------------------------------------------


async def test_agent_counts_completions_accepts_and_in_flight() -> None:
    kernel = FakeKernel()
    base = fd_count()
    nl = ("netlink", "client", "psk")
    before = {
        "eopnotsupp": metrics.HANDSHAKES.value(*nl, "EOPNOTSUPP"),
        "ok": metrics.NETLINK_ACCEPTS.value("ok"),
        "eagain": metrics.NETLINK_ACCEPTS.value("eagain"),
        "dur": metrics.DURATION.count("netlink", "client"),
    }
    fd = udp_fd(4420)
    kernel.pending.append(lambda seq: psk_reply(fd, seq))
    async with running(HandshakeAgent(kernel, never_called)) as agent:
        await until(lambda: len(kernel.dones()) == 1)
        await agent.wait_idle()
    assert metrics.HANDSHAKES.value(*nl, "EOPNOTSUPP") == before["eopnotsupp"] + 1
    assert metrics.NETLINK_ACCEPTS.value("ok") == before["ok"] + 1
    assert metrics.NETLINK_ACCEPTS.value("eagain") >= before["eagain"] + 1
    assert metrics.DURATION.count("netlink", "client") == before["dur"] + 1
    assert metrics.IN_FLIGHT.value("netlink") == 0
    got = parse(Exposition(registry(process=False))())
    assert got[("quichsd_handshakes_in_flight", (("source", "netlink"),))] == 0
    key = (("auth", "psk"), ("role", "client"), ("source", "netlink"), ("status", "EOPNOTSUPP"))
    assert got[("quichsd_handshakes_total", key)] == before["eopnotsupp"] + 1
    assert fd_count() == base


async def test_in_flight_gauge_while_a_handler_runs() -> None:
    kernel = FakeKernel()
    release = asyncio.Event()
    started = asyncio.Event()

    async def handler(request: AcceptRequest, sock: socket.socket) -> HandshakeOutcome:
        started.set()
        await release.wait()
        return HandshakeOutcome(0)

    before = metrics.HANDSHAKES.value("netlink", "client", "psk", "OK")
    fd = udp_fd()
    kernel.pending.append(lambda seq: psk_reply(fd, seq))
    async with running(HandshakeAgent(kernel, handler, quic_protocol=UDP)) as agent:
        await asyncio.wait_for(started.wait(), 5)
        assert metrics.IN_FLIGHT.value("netlink") == 1
        release.set()
        await until(lambda: len(kernel.dones()) == 1)
        await agent.wait_idle()
    assert metrics.IN_FLIGHT.value("netlink") == 0
    assert metrics.HANDSHAKES.value("netlink", "client", "psk", "OK") == before + 1


async def test_accept_errors_are_counted() -> None:
    kernel = FakeKernel()
    before = metrics.NETLINK_ACCEPTS.value("error")

    async def eperm(body: bytes, flags: int) -> list[bytes]:
        raise OSError(errno.EPERM, "Operation not permitted")

    kernel.request = eperm  # type: ignore[method-assign]
    async with running(HandshakeAgent(kernel, never_called)) as agent:
        await agent.wait_idle()
    assert metrics.NETLINK_ACCEPTS.value("error") == before + 1


# --- the HTTP endpoint over TCP -----------------------------------------------------------


async def http(port: int, request: bytes, *, half_close: bool = True) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    if half_close:
        writer.write_eof()
    try:
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


@pytest.fixture
async def server() -> AsyncIterator[tuple[MetricsServer, int]]:
    reg = Registry()
    reg.register(Counter("t_total", "T")).inc()
    port = free_tcp_port()
    srv = MetricsServer(ListenAddress("127.0.0.1", port), Exposition(registry(reg, process=False)))
    await srv.start()
    yield srv, port
    await srv.stop()


async def test_endpoint_answers_and_survives_bad_requests(
    server: tuple[MetricsServer, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    _srv, port = server
    ok = await http(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert ok.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n" in ok
    assert ok.endswith(b"\r\n\r\n# HELP t_total T\n# TYPE t_total counter\nt_total 1.0\n")
    assert (await http(port, b"GET /x HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 404 ")
    assert (await http(port, b"DELETE /metrics HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 405 ")
    assert (await http(port, b"\x00\xff garbage\r\n\r\n")).startswith(b"HTTP/1.1 400 ")
    big = b"GET /metrics HTTP/1.1\r\n" + b"X: " + b"a" * 9000 + b"\r\n\r\n"
    assert (await http(port, big)).startswith(b"HTTP/1.1 431 ")
    many = b"GET /metrics HTTP/1.1\r\n" + b"X: aaaaaaaaaa\r\n" * 700 + b"\r\n"
    assert (await http(port, many)).startswith(b"HTTP/1.1 431 ")
    assert await http(port, b"GET /metrics HTTP/1.1\r\n") == b""  # EOF mid-head: no answer
    monkeypatch.setattr(metrics_http, "READ_TIMEOUT", 0.2)
    t0 = time.monotonic()
    assert await http(port, b"GET /metrics HTTP/1.1\r\n", half_close=False) == b""
    assert time.monotonic() - t0 < 5
    assert (await http(port, b"GET /metrics HTTP/1.0\r\n\r\n")).startswith(b"HTTP/1.1 200 ")


async def test_issue_11_item_12_silent_connections_cannot_keep_a_scrape_out(
    server: tuple[MetricsServer, int],
) -> None:
    """issue 11 item 12: 40 silent connections from one address: at most
    max_connections_per_address (4) are held, each newcomer closing the oldest silent one,
    and a scrape is answered 200 (it used to be 503 once 16 were open)."""
    srv, port = server
    evicted = metrics.METRICS_DROPPED.value("evicted")
    silent = [await asyncio.open_connection("127.0.0.1", port) for _ in range(40)]
    await asyncio.sleep(0.1)
    assert len(srv._conns) == 4
    assert (await http(port, b"GET /metrics HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 200 ")
    assert metrics.METRICS_DROPPED.value("evicted") - evicted == 37  # 36, then the scrape's
    closed = [await asyncio.wait_for(r.read(), 5) for r, _w in silent[:36]]
    assert closed == [b""] * 36  # closed without an answer
    for _r, w in silent:
        w.close()


async def test_issue_11_item_12_503_only_when_every_slot_is_answering() -> None:
    """issue 11 item 12: two scrapes whose clients do not read a large answer hold both
    slots of their address (writing is never interrupted): a third gets 503; once they
    read, scrapes are answered again."""
    big = b"x" * (16 << 20)
    port = free_tcp_port()
    srv = MetricsServer(ListenAddress("127.0.0.1", port), lambda: big, per_address=2)
    await srv.start()
    busy = metrics.METRICS_DROPPED.value("busy")
    try:
        stuck = []
        for _ in range(2):
            r, w = await asyncio.open_connection("127.0.0.1", port, limit=1 << 16)
            w.write(b"GET /metrics HTTP/1.1\r\n\r\n")
            stuck.append((r, w))
        await asyncio.sleep(0.3)
        refused = await http(port, b"GET /metrics HTTP/1.1\r\n\r\n")
        assert refused.startswith(b"HTTP/1.1 503 "), refused[:100]
        assert metrics.METRICS_DROPPED.value("busy") == busy + 1
        for r, w in stuck:
            assert len(await asyncio.wait_for(r.read(), 10)) > len(big)
            w.close()
        ok = await http(port, b"GET /metrics HTTP/1.1\r\n\r\n")
        assert ok.startswith(b"HTTP/1.1 200 ")
    finally:
        await srv.stop()


async def test_endpoint_follows_settings() -> None:
    reg = Registry()
    ep = MetricsEndpoint(Exposition(registry(reg, process=False)))
    a, b = free_tcp_port(), free_tcp_port()
    on_a = MetricsSettings(True, ListenAddress("127.0.0.1", a))
    assert await ep.apply(on_a) == f"metrics on http://127.0.0.1:{a}/metrics"
    assert await ep.apply(on_a) is None  # unchanged: not restarted
    assert ep.server is not None and ep.server.per_address == 4
    assert await ep.apply(MetricsSettings(True, on_a.listen, 2)) is None  # applied in place
    assert ep.server.per_address == 2
    assert (await http(a, b"GET /metrics HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 200 ")
    assert await ep.apply(MetricsSettings(True, ListenAddress("127.0.0.1", b))) is not None
    assert (await http(b, b"GET /metrics HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 200 ")
    with pytest.raises(ConnectionRefusedError):
        await http(a, b"GET /metrics HTTP/1.1\r\n\r\n")
    # the new address is taken: stays on the old one and says so
    with socket.create_server(("127.0.0.1", 0)) as taken:
        busy = MetricsSettings(True, ListenAddress("127.0.0.1", taken.getsockname()[1]))
        change = await ep.apply(busy)
        assert change is not None and change.startswith("metrics not moved (")
        assert "cannot listen on 127.0.0.1:" in change and change.endswith(f":{b}/metrics")
    assert (await http(b, b"GET /metrics HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 200 ")
    assert await ep.apply(MetricsSettings(False, on_a.listen)) == "metrics disabled"
    with pytest.raises(ConnectionRefusedError):
        await http(b, b"GET /metrics HTTP/1.1\r\n\r\n")
    await ep.stop()


# --- the real daemon ----------------------------------------------------------------------


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(body: bytes) -> Samples:
    """Every sample, by (name, sorted labels), as prometheus_client's parser reads it."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(body.decode())
        for s in fam.samples
    }


def scrape(port: int) -> Samples:
    answer = get(port)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer[:200]
    return parse(answer.partition(b"\r\n\r\n")[2])


def get(port: int, request: bytes = b"GET /metrics HTTP/1.1\r\nHost: q\r\n\r\n") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < 15 and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"metrics port {port} never opened:\n{log.read_text()}")


def probe_via_gtlsserver(d: Path, sock: Path) -> None:
    """A canary: one `quichsd-probe connect --via` handshake to gtlsserver, which must work."""
    srv = GtlsServer(d, d / "server.pem", d / "server.key")
    try:
        p = subprocess.run(
            [str(BIN / "quichsd-probe"), "connect", "127.0.0.1", str(srv.port), "--sni",
             "server.test", "--alpn", "h3", "--via", str(sock)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    finally:
        srv.stop()
    (res,) = [json.loads(x) for x in p.stdout.splitlines() if x.startswith("{")]
    assert p.returncode == 0 and res["ok"] is True, (p.stdout, p.stderr)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[Path, Path, int, subprocess.Popen[bytes]]]:
    d = tmp_path
    make_pki().write(d)
    (d / "htdocs").mkdir()
    (d / "htdocs" / "index.html").write_text("hello\n")
    sock = d / "quichsd.sock"
    port = free_tcp_port()
    cfg = d / "config.yaml"
    cfg.write_text(
        f"client:\n  x509:\n    truststore: {d / 'ca.pem'}\n"
        f"unix_socket:\n  path: {sock}\n  allowed_uids: [{os.getuid()}]\n"
        "  max_idle_connections: 2\n"
        f'metrics:\n  enabled: true\n  listen: "127.0.0.1:{port}"\n'
    )
    log = d / "daemon.log"
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "JOURNAL_STREAM")}
    proc = subprocess.Popen(
        [str(BIN / "quichsd"), "-s", "-c", str(cfg)],
        stdout=log.open("w"), stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    try:
        wait_for_port(port, proc, log)
        yield d, sock, port, proc
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.peer
def test_daemon_serves_metrics_after_a_unix_handshake(
    daemon: tuple[Path, Path, int, subprocess.Popen[bytes]],
) -> None:
    d, sock, port, proc = daemon
    first = get(port)
    assert first.startswith(b"HTTP/1.1 200 OK\r\n"), first
    assert b"Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n" in first
    got = parse(first.partition(b"\r\n\r\n")[2])
    info = [k for k in got if k[0] == "quichsd_build_info"]
    python = ".".join(map(str, sys.version_info[:3]))
    labels = (("gnutls", gnutls_version()), ("python", python), ("version", __version__))
    assert info == [("quichsd_build_info", labels)] and got[info[0]] == 1, info
    assert re.fullmatch(r"3\.[0-9.]+", gnutls_version())
    assert not any(k[0] == "quichsd_info" for k in got)  # renamed to quichsd_build_info
    assert got[("quichsd_handshakes_in_flight", (("source", "unix"),))] == 0
    # every labelled counter is there at 0 before anything happened
    handshakes = {k: v for k, v in got.items() if k[0] == "quichsd_handshakes_total"}
    assert len(handshakes) == 2 * 2 * 3 * len(metrics.HANDSHAKE_STATUSES), len(handshakes)
    assert set(handshakes.values()) == {0}
    ok_unix = (("auth", "x509"), ("role", "client"), ("source", "unix"), ("status", "OK"))
    assert ("quichsd_handshakes_total", ok_unix) in handshakes
    for name, label, values in [
        ("quichsd_netlink_accept_total", "result", ("ok", "eagain", "error")),
        ("quichsd_unix_refused_total", "reason", metrics.UNIX_REFUSALS),
        ("quichsd_accept_errors_total", "listener", ("unix", "metrics")),
        ("quichsd_metrics_connections_dropped_total", "reason", ("evicted", "busy")),
        ("quichsd_config_reloads_total", "result", ("ok", "refused")),
    ]:
        series = {k[1]: v for k, v in got.items() if k[0] == name}
        assert series == {((label, v),): 0 for v in values}, (name, series)
    for role in ("client", "server"):
        unix_role = (("role", role), ("source", "unix"))
        assert got[("quichsd_handshake_duration_seconds_count", unix_role)] == 0
    probe_via_gtlsserver(d, sock)
    # malformed requests get 400    probe_via_gtlsserver(d, sock)
    # malformed requests get 400 and the daemon keeps serving
    assert get(port, b"NOT HTTP AT ALL\r\n\r\n").startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert get(port, b"\x16\x03\x01\x00\x05hello\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert get(port, b"POST /metrics HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 405 ")
    assert get(port, b"GET /favicon.ico HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 404 ")
    after = scrape(port)
    assert after[("quichsd_handshakes_total", ok_unix)] == 1
    client = (("role", "client"), ("source", "unix"))
    assert after[("quichsd_handshake_duration_seconds_count", client)] == 1
    assert sum(v for k, v in after.items() if k[0] == "quichsd_handshakes_total") == 1
    assert proc.poll() is None


def test_daemon_process_metrics(daemon: tuple[Path, Path, int, subprocess.Popen[bytes]]) -> None:
    """process_* from prometheus_client's ProcessCollector describe the daemon itself: its
    fd count as /proc/PID/fd shows it (the scrape's own connection is one of them), its
    RSS as /proc/PID/status shows it, and CPU seconds that grow with work."""
    _d, _sock, port, proc = daemon

    def fds() -> int:
        return len(os.listdir(f"/proc/{proc.pid}/fd"))

    t0, n = time.monotonic(), fds()  # settles once the start-up probes' connections close
    while True:
        time.sleep(0.2)
        if (m := fds()) == n:
            break
        n = m
        assert time.monotonic() - t0 < 10
    got = scrape(port)
    # the scrape's own connection is open while the daemon counts
    assert abs(got[("process_open_fds", ())] - (n + 1)) <= 1, (got[("process_open_fds", ())], n)
    status = Path(f"/proc/{proc.pid}/status").read_text()
    rss = int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1)) * 1024  # type: ignore[union-attr]
    assert abs(got[("process_resident_memory_bytes", ())] - rss) < 8 << 20, (rss, got)
    assert 10 << 20 < rss < 200 << 20
    with open(f"/proc/{proc.pid}/limits") as f:
        soft = next(int(x.split()[3]) for x in f if x.startswith("Max open files"))
    assert got[("process_max_fds", ())] == soft
    cpu = got[("process_cpu_seconds_total", ())]
    assert 0 < cpu < 60
    assert abs(got[("process_start_time_seconds", ())] - time.time()) < 120
    for _ in range(200):
        get(port)
    assert scrape(port)[("process_cpu_seconds_total", ())] > cpu


def refused(port: int, reason: str) -> float:
    return scrape(port)[("quichsd_unix_refused_total", (("reason", reason),))]


def unix_replies(conn: socket.socket) -> list[codec.Message]:
    conn.settimeout(10)
    out: list[codec.Message] = []
    while data := conn.recv(70000):
        out.append(codec.decode(data))
    return out


def test_daemon_counts_refused_unix_connections(
    daemon: tuple[Path, Path, int, subprocess.Popen[bytes]],
) -> None:
    """Real connections refused by the unix service, each counted under its reason: a
    silent one closed for newer ones (max_idle_connections 2), a malformed request, and,
    after a SIGHUP that no longer allows this uid, a connection from it."""
    d, sock, port, proc = daemon
    silent = [socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) for _ in range(3)]
    try:
        for s in silent:
            s.connect(str(sock))
            time.sleep(0.1)  # accepted in this order
        (err,) = unix_replies(silent[0])
        assert isinstance(err, codec.Error) and err.status == errno.EAGAIN, err
    finally:
        for s in silent:
            s.close()
    assert refused(port, "idle_limit") == 1
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as bad:
        bad.connect(str(sock))
        bad.send(b"\x00not a record of the unix protocol")
        (err,) = unix_replies(bad)
        assert isinstance(err, codec.Error), err
    assert refused(port, "bad_request") == 1
    cfg = d / "config.yaml"
    cfg.write_text(cfg.read_text().replace(f"[{os.getuid()}]", f"[{os.getuid() + 4242}]"))
    proc.send_signal(signal.SIGHUP)
    t0 = time.monotonic()
    while scrape(port)[("quichsd_config_reloads_total", (("result", "ok"),))] != 1:
        assert time.monotonic() - t0 < 10, (d / "daemon.log").read_text()
        time.sleep(0.05)
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as other:
        other.connect(str(sock))
        (err,) = unix_replies(other)
        assert isinstance(err, codec.Error) and err.status == errno.EACCES, err
    got = scrape(port)
    assert got[("quichsd_unix_refused_total", (("reason", "not_allowed"),))] == 1
    assert got[("quichsd_unix_refused_total", (("reason", "idle_limit"),))] == 1
    assert got[("quichsd_unix_refused_total", (("reason", "idle_timeout"),))] == 0
    assert proc.poll() is None


def test_daemon_sighup_moves_the_endpoint(
    daemon: tuple[Path, Path, int, subprocess.Popen[bytes]],
) -> None:
    d, sock, port, proc = daemon
    cfg = d / "config.yaml"
    new = free_tcp_port()
    cfg.write_text(cfg.read_text().replace(f":{port}", f":{new}"))
    proc.send_signal(signal.SIGHUP)
    wait_for_port(new, proc, d / "daemon.log")
    assert scrape(new)[("quichsd_config_reloads_total", (("result", "ok"),))] == 1
    with pytest.raises(ConnectionRefusedError):
        get(port)
    cfg.write_text("handshake:\n  default_timeout_ms: -5\n")
    proc.send_signal(signal.SIGHUP)
    t0 = time.monotonic()
    while scrape(new)[("quichsd_config_reloads_total", (("result", "refused"),))] != 1:
        assert time.monotonic() - t0 < 10, get(new)
        time.sleep(0.05)
    assert f"metrics on http://127.0.0.1:{new}/metrics" in (d / "daemon.log").read_text()


@pytest.mark.peer
def test_daemon_issue_11_item_12_silent_connections_do_not_block_scrapes(
    daemon: tuple[Path, Path, int, subprocess.Popen[bytes]],
) -> None:
    """issue 11 item 12, on the real daemon: 40 silent TCP connections (16 made every
    scrape 503) and scrapes are still answered, counted as evictions; then a canary
    socket-ops handshake against gtlsserver succeeds."""
    d, sock, port, proc = daemon
    silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(40)]
    try:
        for _ in range(3):
            answer = get(port)
            assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer[:100]
    finally:
        for s in silent:
            s.close()
    evicted = parse(answer.partition(b"\r\n\r\n")[2])[
        ("quichsd_metrics_connections_dropped_total", (("reason", "evicted"),))
    ]
    assert evicted >= 36, answer
    probe_via_gtlsserver(d, sock)
    assert proc.poll() is None
