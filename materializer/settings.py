"""The materializer's settings: read once from the environment, validated, frozen.

A field is one `pulse_bi.settings.setting` (kind, default, doc) whose variable is its name
in capitals (the HTTP server's take a ``MATERIALIZER_`` prefix). The settings table of
docs/OPERATIONS.md is generated from them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pulse_bi.settings import (
    Choice,
    Float,
    Host,
    Int,
    Multiple,
    NatsUrls,
    PathKind,
    SettingsError,
    Size,
    check_settings,
    read_settings,
    setting,
    size_in_bytes,
)

__all__ = ["Settings", "SettingsError", "size_in_bytes"]


#: Days the stream keeps an event beyond ARCHIVE_AFTER_DAYS at least: time for the
#: archive to take it (runs every ARCHIVE_INTERVAL) even after a day offline.
RETENTION_MARGIN_DAYS = 1.0
#: Longest retention or archive age accepted (a century).
MAX_DAYS = 36_500.0

#: The kinds several settings share: seconds where 0 turns a schedule off, a period
#: that must be positive, an age in days (0: never), a count (0 allowed).
_SECONDS = Float(0)
_INTERVAL = Float(0, above=True)
_DAYS = Float(0, MAX_DAYS)
_COUNT = Int(0)


def _in_data_path(name: str, doc: str) -> Path:
    """A path setting whose default is ``name`` in DATA_PATH (wherever that is set)."""

    def derive(values: Mapping[str, Any]) -> Path:
        return Path(values["data_path"]) / name

    return setting(
        PathKind(), Path("data") / name, doc, shown_default=f"$DATA_PATH/{name}", derive=derive
    )


@dataclass(frozen=True)
class Settings:
    """Everything the materializer can be told, with its environment variable."""

    nats_url: str = setting(NatsUrls(), "nats://127.0.0.1:4222", "NATS server(s), comma-separated")
    data_path: Path = setting(
        PathKind(), Path("data"), "directory for the DuckDB file (created when missing)"
    )
    duckdb_path: Path = _in_data_path("pulse_bi.duckdb", "the DuckDB file")
    duckdb_memory_limit: str = setting(
        Size("empty: DuckDB's default, 80 % of RAM"),
        "64MB",
        "DuckDB's memory limit (empty: DuckDB's default, 80 % of RAM); see "
        '"Memory" for the RSS it gives',
        empty="",
    )
    duckdb_threads: int = setting(
        _COUNT,
        1,
        "DuckDB worker threads (0: one per core); one is as fast for the batch statements "
        "and leaves a core to NATS",
    )
    duckdb_checkpoint_threshold: str = setting(
        Size("empty: DuckDB's default, 16MB"),
        "16MB",
        "WAL size at which the materializer checkpoints, after the batch's change notice, "
        "and a quarter of it once ingest is idle "
        "(DuckDB's own automatic checkpoint is a backstop at four times it): rows appended "
        "since the last checkpoint stay in memory until then, so it bounds the RSS of a bulk "
        'catch-up; see "Checkpoints" and "Memory"',
        empty="",
    )
    duckdb_row_group_size: int = setting(
        Multiple(2048, 2048, 1_048_576),  # DuckDB: a multiple of its vector size
        16_384,
        "rows per row group the materializer appends (DuckDB's default: 122880): a "
        "checkpoint rewrites the partly filled last group of every growing table, so smaller "
        'groups shorten the longest checkpoints and make the file larger; see "Checkpoints"',
    )
    malloc_arena_max: int = setting(
        Int(0, 1024),  # glibc's ``int``; more than 8 per core is never useful
        2,
        "glibc malloc arenas, set at start-up (glibc reads the same variable; `0`: glibc's "
        'default, 8 per core); fewer arenas keep less freed memory, see "Memory"',
        env="MALLOC_ARENA_MAX",
    )
    http_host: str = setting(
        Host(),
        "127.0.0.1",
        "address of the `/health`, `/stats`, `/metrics` server (`0.0.0.0` in containers)",
        env="MATERIALIZER_HTTP_HOST",
    )
    http_port: int = setting(
        Int(0, 65535), 8005, "its port (0: no HTTP server)", env="MATERIALIZER_HTTP_PORT"
    )
    batch_max_events: int = setting(Int(1), 20_000, "most events applied in one DuckDB transaction")
    batch_max_wait_ms: int = setting(
        Int(0, 1000),
        5,
        "how long a writer that comes free with messages already waiting pauses before "
        "taking them, so the reads a change notice set off run alone and the batch fills "
        "(0: never; at most 1000, since every batch of a writer that is behind pays it); a "
        "message that finds the writer idle is taken at once, so a trickle pays no wait "
        '(see "Batches")',
    )
    checkpoint_interval: float = setting(
        _SECONDS,
        300.0,
        "seconds between checkpoints of the DuckDB file while events arrive, whatever the "
        "WAL's size, and once ingest is idle if anything was committed since (0: only by "
        'the WAL\'s size, `DUCKDB_CHECKPOINT_THRESHOLD`); see "Checkpoints"',
    )
    heartbeat_interval: float = setting(
        _INTERVAL, 2.0, "seconds between version heartbeats on `pulse.bi.changes`"
    )
    query_workers: int = setting(
        Int(1, 64), 4, "threads answering named queries concurrently with ingest"
    )
    stream_duplicate_window: float = setting(
        _INTERVAL,
        120.0,
        "seconds JetStream drops a re-published `Nats-Msg-Id` (used when the materializer "
        "creates the stream)",
    )
    stream_replicas: int = setting(
        Int(1, 5),
        1,
        "copies of the stream on a NATS cluster, 1 to 5 (used when the materializer creates "
        "the stream; `3` on a 3-node cluster, docs/SCALING.md)",
    )
    read_max_lag: int = setting(
        _COUNT,
        0,
        "events behind the stream beyond which this replica leaves the read queue group "
        "until it is back within half of that (0: always answers; docs/SCALING.md, "
        '"Monotonic reads")',
    )
    fault_retry_max: float = setting(
        _INTERVAL,
        30.0,
        "longest wait in seconds between retries of a batch that failed on a fault; waits "
        'start at 0.5 s and double up to it (see "Faults")',
    )
    disk_free_min: str = setting(
        Size("empty or 0: no warning; a bare number is bytes", bare=True),
        "1GB",
        "free space on the DuckDB file's volume below which `/health` says `degraded` "
        '(`0`: no warning); see "Disk space"',
        empty="0",
    )
    backup_path: Path = _in_data_path("backups", 'directory backups are written to (see "Backup")')
    backup_interval: float = setting(
        _SECONDS, 0.0, "seconds between scheduled backups (`0`: only `pulse-bi backup`)"
    )
    backup_keep_daily: int = setting(
        Int(0, 3660), 7, "scheduled backups keep the newest of this many days"
    )
    backup_keep_weekly: int = setting(
        Int(0, 520), 4, "scheduled backups also keep the newest of this many ISO weeks"
    )
    archive_path: Path = _in_data_path(
        "archive", 'directory of the Parquet archive (see "Archive and retention")'
    )
    archive_after_days: float = setting(
        _DAYS,
        0.0,
        "raw events older than this many days (stream time) go to the archive and leave "
        "DuckDB's raw tables (`0`: never)",
    )
    archive_interval: float = setting(
        _INTERVAL, 3600.0, "seconds between archive, retention and compaction runs"
    )
    stream_max_age_days: float = setting(
        _DAYS,
        0.0,
        "`max_age` of the stream when the materializer creates it, checked on an existing "
        "one (`0`: no limit); at least `ARCHIVE_AFTER_DAYS` + 1",
    )
    log_level: str = setting(
        Choice("DEBUG", "INFO", "WARNING", "ERROR"), "INFO", "`DEBUG`, `INFO`, `WARNING` or `ERROR`"
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the settings from ``environ`` (default: the process environment)."""
        return read_settings(cls, os.environ if environ is None else environ)

    def __post_init__(self) -> None:
        check_settings(self)
        if self.duckdb_path.exists() and self.duckdb_path.is_dir():
            raise SettingsError("DUCKDB_PATH", str(self.duckdb_path), "a file, not a directory")
        if self.stream_max_age_days and (
            not self.archive_after_days
            or self.stream_max_age_days < self.archive_after_days + RETENTION_MARGIN_DAYS
        ):
            raise SettingsError(
                "STREAM_MAX_AGE_DAYS",
                f"{self.stream_max_age_days:g}",
                "a retention that cannot delete events before they are archived: set "
                f"ARCHIVE_AFTER_DAYS and keep this at least ARCHIVE_AFTER_DAYS + "
                f'{RETENTION_MARGIN_DAYS:g} (docs/OPERATIONS.md, "Archive and retention")',
            )

    @property
    def checkpoint_threshold_bytes(self) -> int:
        """``duckdb_checkpoint_threshold`` in bytes (empty: DuckDB's default, 16 MiB)."""
        return size_in_bytes(self.duckdb_checkpoint_threshold or "16MiB")

    @property
    def disk_free_min_bytes(self) -> int:
        """``disk_free_min`` in bytes (0: no warning)."""
        return size_in_bytes(self.disk_free_min)
