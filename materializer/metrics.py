"""Prometheus metrics of the materializer (one registry per process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from pulse_bi.metrics import MetricSet


class MaterializerMetrics:
    """The materializer's counters, gauges and histograms."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        m = MetricSet(self.registry, "pulse_materializer")
        self.events_applied = m.counter("events_applied", "Events applied to the aggregates")
        self.events_rejected = m.counter("events_rejected", "Events stored as rejected")
        self.events_duplicate = m.counter(
            "events_duplicate", "Re-delivered event ids ignored (no-op)"
        )
        self.batches = m.counter("batches", "Committed batches")
        self.batch_seconds = m.histogram(
            "batch_seconds",
            "Time to apply and commit one batch",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.batch_events = m.histogram(
            "batch_events",
            "Events per committed batch",
            buckets=(1, 10, 100, 1000, 5000, 10000, 20000, 50000),
        )
        self.checkpoint_seconds = m.histogram(
            "checkpoint_seconds",
            "Time of one scheduled CHECKPOINT of the DuckDB file",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.fold_seconds = m.histogram(
            "fold_seconds",
            "Time of one fold of the aggregate deltas into their bases, after a change notice",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.checkpoint_retries = m.counter(
            "checkpoint_retries",
            "Scheduled checkpoints refused because a read was running (tried again)",
        )
        self.delivery_pauses = m.counter(
            "delivery_pauses",
            "Times delivery was paused because three batches waited (flow control held back)",
        )
        self.messages_received_again = m.counter(
            "messages_received_again",
            "Messages that arrived for a subscription already gone, to be delivered again",
        )
        self.memory_releases = m.counter(
            "memory_releases",
            "Times memory was handed back once ingest went idle after a catch-up or burst",
        )
        self.last_sequence = m.gauge("last_sequence", "Last applied stream sequence")
        self.stream_last_sequence = m.gauge("stream_last_sequence", "Last sequence in the stream")
        self.lag = m.gauge("lag_events", "Events in the stream not applied yet")
        self.gaps = m.counter(
            "stream_gaps",
            "Sequence gaps found in the stream (events deleted before they were applied)",
        )
        self.events_missing = m.counter(
            "events_missing", "Stream sequences lost in gaps (never applied)"
        )
        self.faults = m.counter(
            "faults",
            "Failed attempts to apply a batch or checkpoint, retried with backoff",
            "kind",  # infrastructure (disk, I/O, memory) or internal (a bug)
        )
        self.disk_free_bytes = m.gauge(
            "disk_free_bytes",
            "Free space on the volume of the DuckDB file (at the last /health or heartbeat)",
        )
        self.last_backup_time = m.gauge(
            "last_backup_timestamp_seconds", "When the newest backup was taken (Unix time; 0: none)"
        )
        self.last_backup_sequence = m.gauge(
            "last_backup_sequence", "Stream sequence the newest backup holds"
        )
        self.archive_horizon = m.gauge(
            "archive_horizon", "Raw events up to this sequence are in the Parquet archive only"
        )
        self.archive_bytes = m.gauge("archive_bytes", "Size of the Parquet archive")
        self.file_bytes = m.gauge("file_bytes", "Size of the DuckDB file and its WAL")
        self.queries = m.counter("queries", "Named queries answered", "query", "outcome")
        self.query_seconds = m.histogram(
            "query_seconds",
            "Time to answer one named query",
            "query",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1),
        )
