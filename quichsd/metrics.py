# SPDX-License-Identifier: GPL-2.0-or-later
"""The daemon's metrics: counters, gauges and histograms recorded as plain numbers. Pure: no
I/O and no exposition. The HTTP endpoint (:mod:`quichsd.metrics_http`) serves them through
prometheus_client (:mod:`quichsd.metrics_export`: a private ``CollectorRegistry``, process
metrics, ``generate_latest``), which is imported only when the endpoint starts, so a daemon
with metrics disabled never loads it (2.4 MB of RSS and 58 modules on top of the
daemon's own imports, measured with prometheus_client 0.26).

Everything runs on the daemon's one event loop, so recording is a plain dict update with
no lock: :meth:`Counter.inc` is one dict get and one store, :meth:`Histogram.observe` adds
a bisect over the bucket bounds. Worker processes (:mod:`quichsd.workers`) report each
completion to the main process, which writes the completion line and records it here;
the store of a worker process is never served.

The metrics of the daemon are the module-level instances below (``REGISTRY``); tests can
build their own :class:`Registry`. Label values come from closed sets (source, role,
auth, errno names), so the number of series stays bounded, and every labelled counter
starts with each known combination at 0 (``initial``), so a scrape shows a series before
its first event and ``rate()`` sees the first one.
"""

from __future__ import annotations

import bisect
import errno
import itertools
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import TypeVar

from . import errors, uapi

#: handshake durations, seconds: loopback P-256 handshakes take ~1-15 ms, a slow peer or
#: a kernel consumer's long timeout reaches into tens of seconds
DURATION_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip

_Key = tuple[str, ...]


class _Metric:
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


class _Scalar(_Metric):
    """A counter or a gauge: one float per label-value tuple."""

    def __init__(
        self,
        name: str,
        help_text: str,
        labelnames: Sequence[str] = (),
        initial: Iterable[Sequence[str]] = (),
    ) -> None:
        super().__init__(name, help_text, labelnames)
        self._values: dict[_Key, float] = {}
        for labels in initial:  # series shown at 0 before their first event
            key = tuple(labels)
            self._check(key)
            self._values[key] = 0.0

    def value(self, *labels: str) -> float:
        return self._values.get(labels, 0.0)

    def series(self) -> Iterator[tuple[_Key, float]]:
        """(label values, value) of every series, in label order."""
        return iter(sorted(self._values.items()))


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
        initial: Iterable[Sequence[str]] = (),
    ) -> None:
        super().__init__(name, help_text, labelnames)
        bounds = tuple(float(b) for b in buckets)
        if not bounds or list(bounds) != sorted(set(bounds)) or math.isinf(bounds[-1]):
            raise ValueError(f"metric {name}: buckets must be finite and strictly increasing")
        self.bounds = bounds
        #: per label values: [count per bucket (not cumulative) + the +Inf one, sum]
        self._series: dict[_Key, tuple[list[int], list[float]]] = {}
        for labels in initial:
            self._new(tuple(labels))

    def _new(self, labels: _Key) -> tuple[list[int], list[float]]:
        self._check(labels)
        series = self._series[labels] = ([0] * (len(self.bounds) + 1), [0.0])
        return series

    def observe(self, value: float, *labels: str) -> None:
        series = self._series.get(labels)
        if series is None:
            series = self._new(labels)
        series[0][bisect.bisect_left(self.bounds, value)] += 1
        series[1][0] += value

    def count(self, *labels: str) -> int:
        series = self._series.get(labels)
        return sum(series[0]) if series else 0

    def series(self) -> Iterator[tuple[_Key, list[tuple[float, int]], float]]:
        """(label values, cumulative (upper bound, count) pairs ending with +Inf, sum) of
        every series, in label order."""
        for key, (counts, total) in sorted(self._series.items()):
            bounds = (*self.bounds, math.inf)
            yield key, list(zip(bounds, itertools.accumulate(counts), strict=True)), total[0]


_M = TypeVar("_M", bound=_Metric)


class Registry:
    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}

    def register(self, metric: _M) -> _M:
        if metric.name in self._metrics:
            raise ValueError(f"metric {metric.name} is already registered")
        self._metrics[metric.name] = metric
        return metric

    def metrics(self) -> list[_Metric]:
        """Every metric, in registration order."""
        return list(self._metrics.values())


# --- the daemon's metrics -----------------------------------------------------------------

#: label values known from the code (each labelled counter starts with all of them at 0)
SOURCES = ("netlink", "unix")
ROLES = ("client", "server")  # "unknown" only for a request of an undefined message type
AUTHS = tuple(m.name.lower() for m in uapi.AuthMode if m != uapi.AuthMode.UNSPEC)


def _handshake_errors(cls: type[errors.HandshakeError]) -> Iterator[type[errors.HandshakeError]]:
    yield cls
    for sub in cls.__subclasses__():
        yield from _handshake_errors(sub)


#: the DONE statuses the code itself produces: every HandshakeError class
#: (quichsd/errors.py), ENOKEY (a PSK client request without a key serial) and OK; a
#: socket call's own errno (SocketError) appears under its name when it first happens
HANDSHAKE_STATUSES = tuple(
    sorted(
        {"OK", errors.errno_name(errno.ENOKEY)}
        | {errors.errno_name(c.status) for c in _handshake_errors(errors.HandshakeError)}
    )
)
NETLINK_ACCEPT_RESULTS = ("ok", "eagain", "error")
#: unix refusals before a handshake: see quichsd/unix/server.py
UNIX_REFUSALS = ("idle_limit", "idle_timeout", "busy", "not_allowed", "bad_request")
METRICS_DROP_REASONS = ("evicted", "busy")
RELOAD_RESULTS = ("ok", "refused")


def _one(values: Iterable[str]) -> list[tuple[str]]:
    return [(v,) for v in values]


REGISTRY = Registry()
BUILD_INFO = REGISTRY.register(
    Gauge(
        "quichsd_build_info",
        "quichsd build information: its version, the GnuTLS library it runs on and Python's"
        " version; the value is 1",
        ("version", "gnutls", "python"),
    )
)
HANDSHAKES = REGISTRY.register(
    Counter(
        "quichsd_handshakes_total",
        "Handshake requests finished (one per completion line), by status",
        ("source", "role", "auth", "status"),
        itertools.product(SOURCES, ROLES, AUTHS, HANDSHAKE_STATUSES),
    )
)
DURATION = REGISTRY.register(
    Histogram(
        "quichsd_handshake_duration_seconds",
        "Time from a request's arrival to its answer",
        ("source", "role"),
        initial=itertools.product(SOURCES, ROLES),
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
        _one(NETLINK_ACCEPT_RESULTS),
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
        "unix connections refused with ERROR before a handshake: idle_limit (silent, closed"
        " for a newer one), idle_timeout (silent too long), busy (max_in_flight), not_allowed"
        " (uid/gid), bad_request (malformed or wrong request)",
        ("reason",),
        _one(UNIX_REFUSALS),
    )
)
ACCEPT_ERRORS = REGISTRY.register(
    Counter(
        "quichsd_accept_errors_total",
        "accept() failures of a listener (e.g. EMFILE at the fd limit): while they last,"
        " new connections wait in the listen backlog and, once it is full, the kernel"
        " refuses them (EAGAIN) without the daemon seeing them",
        ("listener",),
        _one(("unix", "metrics")),
    )
)
METRICS_DROPPED = REGISTRY.register(
    Counter(
        "quichsd_metrics_connections_dropped_total",
        "metrics connections closed unanswered: evicted (no complete request, closed for a"
        " newer one), busy (503: every slot answering a scrape)",
        ("reason",),
        _one(METRICS_DROP_REASONS),
    )
)
CONFIG_RELOADS = REGISTRY.register(
    Counter(
        "quichsd_config_reloads_total",
        "SIGHUP reloads, applied or refused",
        ("result",),
        _one(RELOAD_RESULTS),
    )
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
