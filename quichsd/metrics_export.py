# SPDX-License-Identifier: GPL-2.0-or-later
"""The exposition of :mod:`quichsd.metrics` through prometheus_client: a private
``CollectorRegistry`` (never prometheus_client's global one) holding a collector that
turns the recorded numbers into metric families at each scrape, and prometheus_client's
``ProcessCollector`` for this process (``process_open_fds``,
``process_resident_memory_bytes``, ``process_cpu_seconds_total``, ...); the text is
``generate_latest(registry)``, format 0.0.4. Beside them, :class:`HeapCollector`'s two gauges of
memory allocated and not freed (:mod:`quichsd.heap`), which unlike the RSS fall back after a
burst of handshakes, so a leak shows as steady growth.

Imported only by the metrics endpoint when it starts (prometheus_client adds 2.4 MB of RSS
and 58 modules to the daemon's own): a daemon with metrics disabled never loads it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from . import heap
from .metrics import REGISTRY, Counter, Gauge, Histogram, Registry

#: what generate_latest writes (prometheus_client >= 0.22 names version 1.0.0 its latest)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _bound(le: float) -> str:
    """A bucket's ``le`` label as prometheus_client writes its own: ``0.005``, ``+Inf``."""
    return "+Inf" if math.isinf(le) else repr(le)


class StoreCollector(Collector):
    """The metrics of a :class:`quichsd.metrics.Registry`, read at each collect."""

    def __init__(self, store: Registry) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        for m in self.store.metrics():
            labels = list(m.labelnames)
            family: CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily
            if isinstance(m, Counter):
                family = CounterMetricFamily(m.name, m.help, labels=labels)
                for key, value in m.series():
                    family.add_metric(list(key), value)
            elif isinstance(m, Gauge):
                family = GaugeMetricFamily(m.name, m.help, labels=labels)
                for key, value in m.series():
                    family.add_metric(list(key), value)
            elif isinstance(m, Histogram):
                family = HistogramMetricFamily(m.name, m.help, labels=labels)
                for key, buckets, total in m.series():
                    pairs = [(_bound(le), float(n)) for le, n in buckets]
                    family.add_metric(list(key), pairs, total)
            else:  # pragma: no cover - the store has no other kind
                raise TypeError(f"metric {m.name}: unknown kind {type(m).__name__}")
            yield family


class HeapCollector(Collector):
    """``quichsd_malloc_in_use_bytes`` (where the C library tells it) and
    ``quichsd_python_allocated_blocks`` of this process, read at each collect."""

    def collect(self) -> Iterator[Metric]:
        in_use = heap.malloc_in_use()
        if in_use is not None:
            yield GaugeMetricFamily(
                "quichsd_malloc_in_use_bytes",
                "Bytes the C heap has allocated and not freed (mallinfo2: uordblks + hblkhd)",
                value=in_use,
            )
        yield GaugeMetricFamily(
            "quichsd_python_allocated_blocks",
            "Memory blocks Python's allocator has handed out and not had back",
            value=heap.python_blocks(),
        )


def registry(store: Registry = REGISTRY, *, process: bool = True) -> CollectorRegistry:
    """A private registry serving ``store`` (and, if ``process``, this process's process and
    heap metrics)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(StoreCollector(store))
    if process:
        ProcessCollector(registry=reg)
        reg.register(HeapCollector())
    return reg


class Exposition:
    """The render function of the endpoint: ``generate_latest`` of one registry."""

    def __init__(self, reg: CollectorRegistry) -> None:
        self.registry = reg

    def __call__(self) -> bytes:
        return generate_latest(self.registry)


def daemon_render() -> Exposition:
    """The daemon's metrics and its process metrics."""
    return Exposition(registry())
