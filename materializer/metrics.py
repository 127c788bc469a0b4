"""Prometheus metrics of the materializer (one registry per process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from pulse_bi.metrics import MetricSet


class MaterializerMetrics:
    """The materializer's counters, gauges and histograms."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        m = MetricSet(self.registry)
        self.events_applied = m.counter(
            "pulse_materializer_events_applied", "Events applied to the aggregates"
        )
        self.events_rejected = m.counter(
            "pulse_materializer_events_rejected", "Events stored as rejected"
        )
        self.events_duplicate = m.counter(
            "pulse_materializer_events_duplicate", "Re-delivered event ids ignored (no-op)"
        )
        self.batches = m.counter("pulse_materializer_batches", "Committed batches")
        self.batch_seconds = m.histogram(
            "pulse_materializer_batch_seconds",
            "Time to apply and commit one batch",
            (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.batch_events = m.histogram(
            "pulse_materializer_batch_events",
            "Events per committed batch",
            (1, 10, 100, 1000, 5000, 10000, 20000, 50000),
        )
        self.checkpoint_seconds = m.histogram(
            "pulse_materializer_checkpoint_seconds",
            "Time of one scheduled CHECKPOINT of the DuckDB file",
            (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.checkpoint_retries = m.counter(
            "pulse_materializer_checkpoint_retries",
            "Scheduled checkpoints refused because a read was running (tried again)",
        )
        self.last_sequence = m.gauge(
            "pulse_materializer_last_sequence", "Last applied stream sequence"
        )
        self.stream_last_sequence = m.gauge(
            "pulse_materializer_stream_last_sequence", "Last sequence in the stream"
        )
        self.lag = m.gauge("pulse_materializer_lag_events", "Events in the stream not applied yet")
        self.gaps = m.counter(
            "pulse_materializer_stream_gaps",
            "Sequence gaps found in the stream (events deleted before they were applied)",
        )
        self.events_missing = m.counter(
            "pulse_materializer_events_missing", "Stream sequences lost in gaps (never applied)"
        )
        self.faults = m.counter(
            "pulse_materializer_faults",
            "Failed attempts to apply a batch or checkpoint, retried with backoff",
            "kind",  # infrastructure (disk, I/O, memory) or internal (a bug)
        )
        self.disk_free_bytes = m.gauge(
            "pulse_materializer_disk_free_bytes",
            "Free space on the volume of the DuckDB file (at the last /health or heartbeat)",
        )
        self.queries = m.counter(
            "pulse_materializer_queries", "Named queries answered", "query", "outcome"
        )
        self.query_seconds = m.histogram(
            "pulse_materializer_query_seconds",
            "Time to answer one named query",
            (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1),
            "query",
        )
