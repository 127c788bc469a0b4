"""Declaring Prometheus metrics on a registry of their own, one line a metric.

The materializer and the gateway each keep their metrics in their own
`CollectorRegistry` (several apps can coexist in one process, as in the tests);
`MetricSet` binds that registry once so a declaration says only name, help and labels.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class MetricSet:
    """Counters, gauges and histograms declared on one registry."""

    def __init__(
        self,
        registry: CollectorRegistry,
        namespace: str = "",
        buckets: Sequence[float] = Histogram.DEFAULT_BUCKETS,
    ) -> None:
        self.registry = registry
        #: Prefix of every name declared here (Prometheus joins it with "_").
        self.namespace = namespace
        #: Bucket bounds of a histogram that names none of its own.
        self.buckets = buckets

    def counter(self, name: str, documentation: str, *labels: str) -> Counter:
        """A counter, labelled by `labels` when there are any."""
        return Counter(name, documentation, labels, self.namespace, registry=self.registry)

    def gauge(self, name: str, documentation: str, *labels: str) -> Gauge:
        """A gauge, labelled by `labels` when there are any."""
        return Gauge(name, documentation, labels, self.namespace, registry=self.registry)

    def histogram(
        self, name: str, documentation: str, *labels: str, buckets: Sequence[float] | None = None
    ) -> Histogram:
        """A histogram (of the set's buckets unless given), labelled by `labels` if any."""
        return Histogram(
            name,
            documentation,
            labels,
            self.namespace,
            buckets=self.buckets if buckets is None else buckets,
            registry=self.registry,
        )
