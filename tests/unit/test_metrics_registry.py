# SPDX-License-Identifier: GPL-2.0-or-later
"""The metrics store, its exposition through prometheus_client (read back with
prometheus_client's own parser), the zero-initialised label sets, that a daemon without
metrics does not load prometheus_client, and the HTTP request parsing of the endpoint,
without sockets."""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from quichsd import errors, metrics
from quichsd.metrics import Counter, Gauge, Histogram, Registry
from quichsd.metrics_export import CONTENT_TYPE, Exposition, registry
from quichsd.metrics_http import CONTENT_TYPE as HTTP_CONTENT_TYPE
from quichsd.metrics_http import BadRequest, answer, parse_head

ROOT = Path(__file__).resolve().parents[2]


def small_registry() -> Registry:
    reg = Registry()
    c = reg.register(Counter("x_requests_total", "Requests done", ("source", "status")))
    g = reg.register(Gauge("x_in_flight", "Now\nbusy \\ here"))
    h = reg.register(Histogram("x_seconds", "Durations", ("role",), buckets=(0.01, 0.1, 1)))
    reg.register(Counter("x_empty_total", "Nothing yet", ("result",), [("a",), ("b",)]))
    c.inc("unix", "OK")
    c.inc("unix", "OK")
    c.inc("netlink", 'E"\\\n')
    g.set(3)
    g.add(-1)
    for v in (0.01, 0.05, 2.0):
        h.observe(v, "client")
    h.observe(0.5, "server")
    return reg


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, parsed by prometheus_client."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def test_exposition_through_prometheus_client() -> None:
    text = Exposition(registry(small_registry(), process=False))().decode()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    assert {n: (f.type, f.documentation) for n, f in fams.items()} == {
        "x_requests": ("counter", "Requests done"),
        "x_in_flight": ("gauge", "Now\nbusy \\ here"),
        "x_seconds": ("histogram", "Durations"),
        "x_empty": ("counter", "Nothing yet"),
    }
    got = samples(text)
    assert got[("x_requests_total", (("source", "unix"), ("status", "OK")))] == 2
    assert got[("x_requests_total", (("source", "netlink"), ("status", 'E"\\\n')))] == 1
    assert got[("x_in_flight", ())] == 2
    client = (("role", "client"),)
    bucket = {le: got[("x_seconds_bucket", (("le", le), ("role", "client")))]
              for le in ("0.01", "0.1", "1.0", "+Inf")}  # fmt: skip
    assert bucket == {"0.01": 1, "0.1": 2, "1.0": 2, "+Inf": 3}
    assert got[("x_seconds_sum", client)] == pytest.approx(2.06)
    assert got[("x_seconds_count", client)] == 3
    assert got[("x_seconds_count", (("role", "server"),))] == 1
    # initialised series are exposed at 0 before any event
    assert got[("x_empty_total", (("result", "a"),))] == 0
    assert got[("x_empty_total", (("result", "b"),))] == 0
    assert CONTENT_TYPE == HTTP_CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"


def test_process_metrics_and_a_private_registry() -> None:
    import prometheus_client

    before = prometheus_client.generate_latest()  # the global registry is left untouched
    got = samples(Exposition(registry(Registry()))().decode())
    assert got[("process_open_fds", ())] >= 3
    assert got[("process_resident_memory_bytes", ())] > 1 << 20
    assert got[("process_cpu_seconds_total", ())] > 0
    assert prometheus_client.generate_latest().count(b"\n# HELP") == before.count(b"\n# HELP")


def test_values_and_errors() -> None:
    reg = Registry()
    c = reg.register(Counter("a_total", "A", ("x",)))
    with pytest.raises(ValueError, match=r"metric a_total: got 2 label values .* expected 1 \(x\)"):
        c.inc("1", "2")
    with pytest.raises(ValueError, match=r"metric b_total: got 0 label values"):
        Counter("b_total", "B", ("x",), [()])
    with pytest.raises(ValueError, match="a_total is already registered"):
        reg.register(Counter("a_total", "again"))
    with pytest.raises(ValueError, match="strictly increasing"):
        Histogram("h", "H", buckets=(1, 1))
    assert Exposition(registry(Registry(), process=False))() == b""


def test_handshake_labels() -> None:
    before = metrics.HANDSHAKES.value("unix", "server", "psk", "EACCES")
    count = metrics.DURATION.count("unix", "server")
    metrics.handshake_finished("unix", 2, 2, "EACCES", 0.003)
    assert metrics.HANDSHAKES.value("unix", "server", "psk", "EACCES") == before + 1
    assert metrics.DURATION.count("unix", "server") == count + 1
    assert metrics.role_label(1) == "client" and metrics.role_label(0) == "unknown"
    assert [metrics.auth_label(a) for a in (1, 2, 3, 9, None)] == [
        "unauth", "psk", "x509", "unknown", "unknown",
    ]  # fmt: skip


def _all_errors(cls: type[errors.HandshakeError]) -> list[type[errors.HandshakeError]]:
    return [cls, *(c for sub in cls.__subclasses__() for c in _all_errors(sub))]


def test_every_known_status_and_label_is_initialised() -> None:
    """Each status the code produces (every HandshakeError class, ENOKEY, OK) and every
    source, role and auth has a series from the start."""
    statuses = {errors.errno_name(c.status) for c in _all_errors(errors.HandshakeError)}
    assert statuses | {"OK", "ENOKEY"} == set(metrics.HANDSHAKE_STATUSES)
    assert {"EACCES", "ETIMEDOUT", "EKEYREJECTED", "EOPNOTSUPP"} <= statuses
    keys = {k for k, _v in metrics.HANDSHAKES.series()}
    for source in ("netlink", "unix"):
        for role in ("client", "server"):
            for auth in ("unauth", "psk", "x509"):
                for status in metrics.HANDSHAKE_STATUSES:
                    assert (source, role, auth, status) in keys
    assert {k for k, _b, _s in metrics.DURATION.series()} >= {
        (s, r) for s in ("netlink", "unix") for r in ("client", "server")
    }
    assert errors.errno_name(errno.EOPNOTSUPP) == "EOPNOTSUPP" and errors.errno_name(0) == "OK"


def test_a_daemon_without_metrics_does_not_load_prometheus_client() -> None:
    """Footprint (issue 15): every module the daemon imports, and its configuration
    loaded, without prometheus_client; the endpoint's server loads it when it starts."""
    code = (
        "import sys\n"
        "import quichsd.cli, quichsd.daemon, quichsd.metrics_http\n"
        "assert 'prometheus_client' not in sys.modules, 'loaded at import'\n"
        "from quichsd.config import ListenAddress\n"
        "quichsd.metrics_http.MetricsServer(ListenAddress('127.0.0.1', 1))\n"
        "assert 'prometheus_client' in sys.modules\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_without_prometheus_client_the_endpoint_says_what_to_install() -> None:
    """Metrics enabled but prometheus_client missing: one clear error, the daemon goes on."""
    code = (
        "import asyncio, sys\n"
        "sys.modules['prometheus_client'] = None\n"
        "from quichsd.config import ListenAddress, MetricsSettings\n"
        "from quichsd.metrics_http import MetricsEndpoint\n"
        "ep = MetricsEndpoint()\n"
        "print(asyncio.run(ep.apply(MetricsSettings(True, ListenAddress('127.0.0.1', 1)))))\n"
        "assert ep.server is None\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("metrics not served (needs the Python package 'prometheus_client'")
    assert "python3-prometheus-client" in r.stdout and "Traceback" not in r.stderr
    assert r.stderr.count("metrics not served: needs the Python package") == 1, r.stderr


def test_exposition_on_debians_prometheus_client() -> None:
    """The minimum version in pyproject (Debian 12's python3-prometheus-client 0.16):
    /usr/bin/python3 -I with Debian's own package renders and parses the daemon's metrics."""
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
        "import prometheus_client\n"
        "from prometheus_client.parser import text_string_to_metric_families as parse\n"
        "from quichsd import metrics_export\n"
        "text = metrics_export.daemon_render()().decode()\n"
        "names = {s.name for f in parse(text) for s in f.samples}\n"
        "assert {'quichsd_handshakes_total', 'process_open_fds',\n"
        "        'quichsd_handshake_duration_seconds_bucket'} <= names, names\n"
        "print(prometheus_client.__file__)\n"
    )
    r = subprocess.run(
        ["/usr/bin/python3", "-I", "-c", code], capture_output=True, text=True, timeout=60, cwd="/"
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("/usr/lib/python3/dist-packages/prometheus_client/"), r.stdout


def render() -> bytes:
    return b"m 1\n"


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 200),
        (b"GET /metrics?name=y HTTP/1.0\n\n", 200),
        (b"GET / HTTP/1.1\r\n\r\n", 404),
        (b"GET /metricsx HTTP/1.1\r\n\r\n", 404),
        (b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 405),
        (b"GET /metrics\r\n\r\n", 400),  # HTTP/0.9
        (b"GET /metrics HTTP/2.0\r\n\r\n", 400),
        (b"GET  /metrics HTTP/1.1\r\n\r\n", 400),
        (b"GET /metrics HTTP/1.1\r\nno colon\r\n\r\n", 400),
        (b"GET /metrics HTTP/1.1\r\n folded: x\r\n\r\n", 400),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),  # a TLS ClientHello
        (b"\r\n", 400),
    ],
)
def test_answer_status(head: bytes, status: int) -> None:
    out = answer(head, render, "text/plain; version=0.0.4; charset=utf-8")
    assert out.startswith(f"HTTP/1.1 {status} ".encode()), out
    assert b"\r\nConnection: close\r\n" in out


def test_answer_bodies() -> None:
    ok = answer(b"GET /metrics HTTP/1.1\r\n\r\n", render, "text/plain; version=0.0.4")
    assert ok == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
        b"Content-Length: 4\r\nConnection: close\r\n\r\nm 1\n"
    )
    head = answer(b"HEAD /metrics HTTP/1.1\r\n\r\n", render, "text/plain")
    assert head.endswith(b"Content-Length: 4\r\nConnection: close\r\n\r\n")
    assert b"Allow: GET, HEAD\r\n" in answer(b"PUT /metrics HTTP/1.1\r\n\r\n", render, "t")


def test_parse_head_names_the_fault() -> None:
    with pytest.raises(BadRequest, match=r"malformed request line b'BREW /pot HTCPCP/1.0'"):
        parse_head(b"BREW /pot HTCPCP/1.0\r\n\r\n")
    with pytest.raises(BadRequest, match="does not end with an empty line"):
        parse_head(b"GET /metrics HTTP/1.1\r\n")
    assert parse_head(b"GET /metrics?x HTTP/1.1\r\nA: b\r\n\r\n") == ("GET", "/metrics")


def test_heap_gauges_follow_allocations_and_frees() -> None:
    """quichsd_malloc_in_use_bytes and quichsd_python_allocated_blocks rise with memory
    allocated (C heap: an 8 MiB ctypes buffer; Python: 100,000 objects) and fall back when
    it is freed, which the RSS does not have to do."""
    import ctypes

    def gauges() -> tuple[float, float]:
        got = samples(Exposition(registry(Registry()))().decode())
        return got[("quichsd_malloc_in_use_bytes", ())], got[
            ("quichsd_python_allocated_blocks", ())
        ]

    c0, p0 = gauges()
    buf = ctypes.create_string_buffer(8 << 20)
    objs = [object() for _ in range(100_000)]
    c1, p1 = gauges()
    assert c1 - c0 >= 8 << 20, (c0, c1)
    assert p1 - p0 >= 99_000, (p0, p1)
    del buf, objs
    c2, p2 = gauges()
    assert c1 - c2 >= 8 << 20, (c1, c2)
    assert p1 - p2 >= 99_000, (p1, p2)
