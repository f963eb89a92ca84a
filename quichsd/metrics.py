"""Process metrics: counters, gauges and histograms, rendered in the Prometheus text
exposition format 0.0.4. Pure: no I/O (the HTTP endpoint is :mod:`quichsd.metrics_http`).

Everything runs on the daemon's one event loop, so recording is a plain dict update with
no lock: :meth:`Counter.inc` is one dict get and one store, :meth:`Histogram.observe` adds
a bisect over the bucket bounds. Worker processes (:mod:`quichsd.workers`) report each
completion to the main process, which writes the completion line and records it here;
the registry of a worker process is never served.

The metrics of the daemon are the module-level instances below (``REGISTRY``); tests can
build their own :class:`Registry`. Label values come from closed sets (source, role,
auth, errno names), so the number of series stays bounded.
"""

from __future__ import annotations

import bisect
import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import TypeVar

from . import uapi

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: handshake durations, seconds: loopback P-256 handshakes take ~1-15 ms, a slow peer or
#: a kernel consumer's long timeout reaches into tens of seconds
DURATION_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip

_Key = tuple[str, ...]


def format_value(value: float) -> str:
    """``1``, ``0.25``, ``+Inf``, ``NaN``: integers without a fraction, floats by repr."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape_label(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class _Metric(ABC):
    kind = ""

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.labelnames = tuple(labelnames)

    def _check(self, labels: _Key) -> None:
        if len(labels) != len(self.labelnames):
            raise ValueError(
                f"metric {self.name}: got {len(labels)} label values {labels!r}, "
                f"expected {len(self.labelnames)} ({', '.join(self.labelnames)})"
            )

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {_escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]

    @abstractmethod
    def samples(self) -> list[str]:
        """The exposition lines of this metric's samples."""


class _Scalar(_Metric):
    """A counter or a gauge: one float per label-value tuple."""

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, labelnames)
        self._values: dict[_Key, float] = {}

    def value(self, *labels: str) -> float:
        return self._values.get(labels, 0.0)

    def samples(self) -> list[str]:
        return [
            f"{self.name}{_labels(self.labelnames, k)} {format_value(v)}"
            for k, v in sorted(self._values.items())
        ]


class Counter(_Scalar):
    kind = "counter"

    def inc(self, *labels: str) -> None:
        if labels not in self._values:
            self._check(labels)
        self._values[labels] = self._values.get(labels, 0.0) + 1.0


class Gauge(_Scalar):
    kind = "gauge"

    def set(self, value: float, *labels: str) -> None:
        self._check(labels)
        self._values[labels] = float(value)

    def add(self, amount: float, *labels: str) -> None:
        if labels not in self._values:
            self._check(labels)
        self._values[labels] = self._values.get(labels, 0.0) + amount


class Histogram(_Metric):
    kind = "histogram"

    def __init__(
        self,
        name: str,
        help_text: str,
        labelnames: Sequence[str] = (),
        buckets: Iterable[float] = DURATION_BUCKETS,
    ) -> None:
        super().__init__(name, help_text, labelnames)
        bounds = tuple(float(b) for b in buckets)
        if not bounds or list(bounds) != sorted(set(bounds)) or math.isinf(bounds[-1]):
            raise ValueError(f"metric {name}: buckets must be finite and strictly increasing")
        self.bounds = bounds
        #: per label values: [count per bucket (not cumulative) + the +Inf one, sum]
        self._series: dict[_Key, tuple[list[int], list[float]]] = {}

    def observe(self, value: float, *labels: str) -> None:
        series = self._series.get(labels)
        if series is None:
            self._check(labels)
            series = self._series[labels] = ([0] * (len(self.bounds) + 1), [0.0])
        series[0][bisect.bisect_left(self.bounds, value)] += 1
        series[1][0] += value

    def count(self, *labels: str) -> int:
        series = self._series.get(labels)
        return sum(series[0]) if series else 0

    def samples(self) -> list[str]:
        out: list[str] = []
        for key, (counts, total) in sorted(self._series.items()):
            running = 0
            for bound, n in zip((*self.bounds, math.inf), counts, strict=True):
                running += n
                le = f'le="{format_value(bound)}"'
                out.append(f"{self.name}_bucket{_labels(self.labelnames, key, le)} {running}")
            out.append(f"{self.name}_sum{_labels(self.labelnames, key)} {format_value(total[0])}")
            out.append(f"{self.name}_count{_labels(self.labelnames, key)} {running}")
        return out


_M = TypeVar("_M", bound=_Metric)


class Registry:
    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}

    def register(self, metric: _M) -> _M:
        if metric.name in self._metrics:
            raise ValueError(f"metric {metric.name} is already registered")
        self._metrics[metric.name] = metric
        return metric

    def render(self) -> bytes:
        """The exposition text: every metric in registration order, ending in a newline."""
        lines: list[str] = []
        for metric in self._metrics.values():
            lines += metric.header()
            lines += metric.samples()
        return ("\n".join(lines) + "\n").encode() if lines else b""


# --- the daemon's metrics -----------------------------------------------------------------

REGISTRY = Registry()
INFO = REGISTRY.register(Gauge("quichsd_info", "quichsd build information", ("version", "gnutls")))
HANDSHAKES = REGISTRY.register(
    Counter(
        "quichsd_handshakes_total",
        "Handshake requests finished (one per completion line), by status",
        ("source", "role", "auth", "status"),
    )
)
DURATION = REGISTRY.register(
    Histogram(
        "quichsd_handshake_duration_seconds",
        "Time from a request's arrival to its answer",
        ("source", "role"),
    )
)
IN_FLIGHT = REGISTRY.register(
    Gauge("quichsd_handshakes_in_flight", "Handshake requests being served now", ("source",))
)
NETLINK_ACCEPTS = REGISTRY.register(
    Counter(
        "quichsd_netlink_accept_total",
        "netlink ACCEPT round trips: ok (a request), eagain (none pending), error",
        ("result",),
    )
)
UNIX_IDLE = REGISTRY.register(
    Gauge(
        "quichsd_unix_idle_connections",
        "unix connections accepted that have not sent their request yet",
    )
)
UNIX_REFUSED = REGISTRY.register(
    Counter(
        "quichsd_unix_refused_total",
        "unix connections closed without a handshake: idle_limit (silent, closed for a newer"
        " one), idle_timeout (silent too long), busy (max_in_flight), not_allowed (uid/gid)",
        ("reason",),
    )
)
METRICS_DROPPED = REGISTRY.register(
    Counter(
        "quichsd_metrics_connections_dropped_total",
        "metrics connections closed unanswered: evicted (no complete request, closed for a"
        " newer one), busy (503: every slot answering a scrape)",
        ("reason",),
    )
)
CONFIG_RELOADS = REGISTRY.register(
    Counter("quichsd_config_reloads_total", "SIGHUP reloads, applied or refused", ("result",))
)

_ROLES: dict[int, str] = {uapi.MsgType.CLIENTHELLO: "client", uapi.MsgType.SERVERHELLO: "server"}


_AUTHS: dict[int, str] = {m: m.name.lower() for m in uapi.AuthMode}


def role_label(message_type: int | None) -> str:
    return _ROLES.get(message_type, "unknown") if message_type is not None else "unknown"


def auth_label(auth_mode: int | None) -> str:
    return _AUTHS.get(auth_mode, "unknown") if auth_mode is not None else "unknown"


def handshake_finished(
    source: str, message_type: int | None, auth_mode: int | None, status: str, seconds: float
) -> None:
    """Record one finished request: ``source`` is ``netlink`` or ``unix``, ``status`` the
    errno name of its answer (``OK``, ``EACCES``, ...)."""
    role = role_label(message_type)
    HANDSHAKES.inc(source, role, auth_label(auth_mode), status)
    DURATION.observe(seconds, source, role)
