"""The metrics registry and its exposition text (format 0.0.4), and the HTTP request
parsing of the endpoint, without sockets."""

from __future__ import annotations

import pytest

from quichsd import metrics
from quichsd.metrics import Counter, Gauge, Histogram, Registry, format_value
from quichsd.metrics_http import BadRequest, answer, parse_head


def small_registry() -> Registry:
    reg = Registry()
    c = reg.register(Counter("x_requests_total", "Requests done", ("source", "status")))
    g = reg.register(Gauge("x_in_flight", "Now\nbusy \\ here"))
    h = reg.register(Histogram("x_seconds", "Durations", ("role",), buckets=(0.01, 0.1, 1)))
    reg.register(Counter("x_empty_total", "Nothing yet", ("result",)))
    c.inc("unix", "OK")
    c.inc("unix", "OK")
    c.inc("netlink", 'E"\\\n')
    g.set(3)
    g.add(-1)
    for v in (0.01, 0.05, 2.0):
        h.observe(v, "client")
    h.observe(0.5, "server")
    return reg


def test_exposition_text_is_byte_exact() -> None:
    assert small_registry().render() == (
        b"# HELP x_requests_total Requests done\n"
        b"# TYPE x_requests_total counter\n"
        b'x_requests_total{source="netlink",status="E\\"\\\\\\n"} 1\n'
        b'x_requests_total{source="unix",status="OK"} 2\n'
        b"# HELP x_in_flight Now\\nbusy \\\\ here\n"
        b"# TYPE x_in_flight gauge\n"
        b"x_in_flight 2\n"
        b"# HELP x_seconds Durations\n"
        b"# TYPE x_seconds histogram\n"
        b'x_seconds_bucket{role="client",le="0.01"} 1\n'
        b'x_seconds_bucket{role="client",le="0.1"} 2\n'
        b'x_seconds_bucket{role="client",le="1"} 2\n'
        b'x_seconds_bucket{role="client",le="+Inf"} 3\n'
        b'x_seconds_sum{role="client"} 2.06\n'
        b'x_seconds_count{role="client"} 3\n'
        b'x_seconds_bucket{role="server",le="0.01"} 0\n'
        b'x_seconds_bucket{role="server",le="0.1"} 0\n'
        b'x_seconds_bucket{role="server",le="1"} 1\n'
        b'x_seconds_bucket{role="server",le="+Inf"} 1\n'
        b'x_seconds_sum{role="server"} 0.5\n'
        b'x_seconds_count{role="server"} 1\n'
        b"# HELP x_empty_total Nothing yet\n"
        b"# TYPE x_empty_total counter\n"
    )


def test_values_and_errors() -> None:
    assert [format_value(v) for v in (0.0, 7.0, 0.25, float("inf"), float("nan"))] == [
        "0", "7", "0.25", "+Inf", "NaN",
    ]  # fmt: skip
    reg = Registry()
    c = reg.register(Counter("a_total", "A", ("x",)))
    with pytest.raises(ValueError, match=r"metric a_total: got 2 label values .* expected 1 \(x\)"):
        c.inc("1", "2")
    with pytest.raises(ValueError, match="a_total is already registered"):
        reg.register(Counter("a_total", "again"))
    with pytest.raises(ValueError, match="strictly increasing"):
        Histogram("h", "H", buckets=(1, 1))
    assert Registry().render() == b""


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
