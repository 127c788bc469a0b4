"""Prometheus metrics of the materializer (one registry per process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class MaterializerMetrics:
    """The materializer's counters, gauges and histograms."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events_applied = Counter(
            "pulse_materializer_events_applied", "Events applied to the aggregates", registry=r
        )
        self.events_rejected = Counter(
            "pulse_materializer_events_rejected", "Events stored as rejected", registry=r
        )
        self.events_duplicate = Counter(
            "pulse_materializer_events_duplicate",
            "Re-delivered event ids ignored (no-op)",
            registry=r,
        )
        self.batches = Counter("pulse_materializer_batches", "Committed batches", registry=r)
        self.batch_seconds = Histogram(
            "pulse_materializer_batch_seconds",
            "Time to apply and commit one batch",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )
        self.batch_events = Histogram(
            "pulse_materializer_batch_events",
            "Events per committed batch",
            buckets=(1, 10, 100, 1000, 5000, 10000, 20000, 50000),
            registry=r,
        )
        self.checkpoint_seconds = Histogram(
            "pulse_materializer_checkpoint_seconds",
            "Time of one scheduled CHECKPOINT of the DuckDB file",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.checkpoint_retries = Counter(
            "pulse_materializer_checkpoint_retries",
            "Scheduled checkpoints refused because a read was running (tried again)",
            registry=r,
        )
        self.last_sequence = Gauge(
            "pulse_materializer_last_sequence", "Last applied stream sequence", registry=r
        )
        self.stream_last_sequence = Gauge(
            "pulse_materializer_stream_last_sequence",
            "Last sequence in the stream",
            registry=r,
        )
        self.lag = Gauge(
            "pulse_materializer_lag_events",
            "Events in the stream not applied yet",
            registry=r,
        )
        self.gaps = Counter(
            "pulse_materializer_stream_gaps",
            "Sequence gaps found in the stream (events deleted before they were applied)",
            registry=r,
        )
        self.events_missing = Counter(
            "pulse_materializer_events_missing",
            "Stream sequences lost in gaps (never applied)",
            registry=r,
        )
        self.faults = Counter(
            "pulse_materializer_faults",
            "Failed attempts to apply a batch or checkpoint, retried with backoff",
            ["kind"],  # infrastructure (disk, I/O, memory) or internal (a bug)
            registry=r,
        )
        self.disk_free_bytes = Gauge(
            "pulse_materializer_disk_free_bytes",
            "Free space on the volume of the DuckDB file (at the last /health or heartbeat)",
            registry=r,
        )
        self.last_backup_time = Gauge(
            "pulse_materializer_last_backup_timestamp_seconds",
            "When the newest backup was taken (Unix time; 0: none)",
            registry=r,
        )
        self.last_backup_sequence = Gauge(
            "pulse_materializer_last_backup_sequence",
            "Stream sequence the newest backup holds",
            registry=r,
        )
        self.archive_horizon = Gauge(
            "pulse_materializer_archive_horizon",
            "Raw events up to this sequence are in the Parquet archive only",
            registry=r,
        )
        self.archive_bytes = Gauge(
            "pulse_materializer_archive_bytes", "Size of the Parquet archive", registry=r
        )
        self.file_bytes = Gauge(
            "pulse_materializer_file_bytes", "Size of the DuckDB file and its WAL", registry=r
        )
        self.queries = Counter(
            "pulse_materializer_queries", "Named queries answered", ["query", "outcome"], registry=r
        )
        self.query_seconds = Histogram(
            "pulse_materializer_query_seconds",
            "Time to answer one named query",
            ["query"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1),
            registry=r,
        )
