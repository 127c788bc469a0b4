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

    def __init__(self, registry: CollectorRegistry, namespace: str = "") -> None:
        self.registry = registry
        #: Prefix of every name declared here (Prometheus joins it with "_").
        self.namespace = namespace

    def counter(self, name: str, documentation: str, *labels: str) -> Counter:
        """A counter, labelled by `labels` when there are any."""
        return Counter(name, documentation, labels, self.namespace, registry=self.registry)

    def gauge(self, name: str, documentation: str, *labels: str) -> Gauge:
        """A gauge, labelled by `labels` when there are any."""
        return Gauge(name, documentation, labels, self.namespace, registry=self.registry)

    def histogram(
        self, name: str, documentation: str, buckets: Sequence[float], *labels: str
    ) -> Histogram:
        """A histogram with the given bucket bounds, labelled by `labels` when there are any."""
        return Histogram(
            name, documentation, labels, self.namespace, buckets=buckets, registry=self.registry
        )
