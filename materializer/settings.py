"""The materializer's settings: read once from the environment, validated, frozen."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


class SettingsError(ValueError):
    """A setting has a value the materializer cannot start with."""


#: Days the stream keeps an event beyond ARCHIVE_AFTER_DAYS at least: time for the
#: archive to take it (runs every ARCHIVE_INTERVAL) even after a day offline.
RETENTION_MARGIN_DAYS = 1.0
#: Longest retention or archive age accepted (a century).
MAX_DAYS = 36_500.0

_SIZE = re.compile(r"^\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$", re.IGNORECASE)


@dataclass(frozen=True)
class Settings:
    """Everything the materializer can be told, with its environment variable."""

    #: NATS_URL: NATS server(s), comma-separated.
    nats_url: str = "nats://127.0.0.1:4222"
    #: DATA_PATH: directory for the DuckDB file (created when missing).
    data_path: Path = Path("data")
    #: DUCKDB_PATH: the DuckDB file; default ``$DATA_PATH/pulse_bi.duckdb``.
    duckdb_path: Path = field(default=Path("data/pulse_bi.duckdb"))
    #: DUCKDB_MEMORY_LIMIT: DuckDB's memory limit, e.g. ``128MB`` (empty: DuckDB's default).
    duckdb_memory_limit: str = "128MB"
    #: DUCKDB_THREADS: DuckDB worker threads (0: one per core). One is as fast for the
    #: batch statements and leaves a core to NATS and the event loop.
    duckdb_threads: int = 1
    #: MATERIALIZER_HTTP_HOST: address of the /health, /stats, /metrics server.
    http_host: str = "127.0.0.1"
    #: MATERIALIZER_HTTP_PORT: port of that server (0: no HTTP server).
    http_port: int = 8005
    #: BATCH_MAX_EVENTS: most events applied in one transaction.
    batch_max_events: int = 20_000
    #: BATCH_MAX_WAIT_MS: how long a batch may wait to fill once the writer is free (0: apply
    #: at once; batches still form from what arrives while the previous one commits).
    batch_max_wait_ms: int = 0
    #: CHECKPOINT_INTERVAL: seconds between checkpoints of the DuckDB file while events
    #: arrive (0: only when the WAL reaches 256 MB). A checkpoint writes the WAL into the
    #: file, so a restart replays at most this much and the file shows its real size.
    checkpoint_interval: float = 300.0
    #: HEARTBEAT_INTERVAL: seconds between version heartbeats on the change subject.
    heartbeat_interval: float = 2.0
    #: QUERY_WORKERS: threads answering named queries concurrently with ingest.
    query_workers: int = 4
    #: STREAM_DUPLICATE_WINDOW: seconds JetStream drops re-published event ids (when it
    #: creates the stream).
    stream_duplicate_window: float = 120.0
    #: FAULT_RETRY_MAX: longest wait, in seconds, between retries of a batch that failed
    #: on a fault (disk full, I/O error); waits start at 0.5 s and double up to it.
    fault_retry_max: float = 30.0
    #: DISK_FREE_MIN: free space on the DuckDB file's volume below which /health reports
    #: ``degraded``, e.g. ``1GB`` (0: no warning). See docs/OPERATIONS.md, "Disk space".
    disk_free_min: str = "1GB"
    #: LOG_LEVEL: DEBUG, INFO, WARNING or ERROR.
    log_level: str = "INFO"
    #: BACKUP_PATH: directory backups are written to; default ``$DATA_PATH/backups``.
    backup_path: Path = field(default=Path("data/backups"))
    #: BACKUP_INTERVAL: seconds between scheduled backups (0: only ``pulse-bi backup``).
    backup_interval: float = 0.0
    #: BACKUP_KEEP_DAILY: scheduled backups keep the newest of this many days.
    backup_keep_daily: int = 7
    #: BACKUP_KEEP_WEEKLY: … and the newest of this many ISO weeks.
    backup_keep_weekly: int = 4
    #: ARCHIVE_PATH: directory of the Parquet archive; default ``$DATA_PATH/archive``.
    archive_path: Path = field(default=Path("data/archive"))
    #: ARCHIVE_AFTER_DAYS: raw events older than this (stream time) go to the archive and
    #: leave DuckDB's raw tables (0: keep them in DuckDB forever).
    archive_after_days: float = 0.0
    #: ARCHIVE_INTERVAL: seconds between archive, retention and compaction runs.
    archive_interval: float = 3600.0
    #: STREAM_MAX_AGE_DAYS: ``max_age`` of the stream when the materializer creates it, and
    #: the value it expects on an existing one (0: the stream keeps every event). Must be at
    #: least ARCHIVE_AFTER_DAYS + 1 so the stream never drops an event not yet archived.
    stream_max_age_days: float = 0.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the settings from ``environ`` (default: the process environment)."""
        env = os.environ if environ is None else environ
        data_path = Path(env.get("DATA_PATH") or "data")
        duckdb_path = Path(env["DUCKDB_PATH"]) if env.get("DUCKDB_PATH") else None
        values: dict[str, Any] = {
            "nats_url": env.get("NATS_URL") or cls.nats_url,
            "data_path": data_path,
            "duckdb_path": duckdb_path or data_path / "pulse_bi.duckdb",
            "duckdb_memory_limit": env.get("DUCKDB_MEMORY_LIMIT", cls.duckdb_memory_limit),
            "duckdb_threads": _int(env, "DUCKDB_THREADS", cls.duckdb_threads, minimum=0),
            "http_host": env.get("MATERIALIZER_HTTP_HOST") or cls.http_host,
            "http_port": _int(env, "MATERIALIZER_HTTP_PORT", cls.http_port, 0, 65535),
            "batch_max_events": _int(env, "BATCH_MAX_EVENTS", cls.batch_max_events, 1),
            "batch_max_wait_ms": _int(env, "BATCH_MAX_WAIT_MS", cls.batch_max_wait_ms, 0),
            "checkpoint_interval": _float(
                env, "CHECKPOINT_INTERVAL", cls.checkpoint_interval, zero_allowed=True
            ),
            "heartbeat_interval": _float(env, "HEARTBEAT_INTERVAL", cls.heartbeat_interval),
            "query_workers": _int(env, "QUERY_WORKERS", cls.query_workers, 1, 64),
            "stream_duplicate_window": _float(
                env, "STREAM_DUPLICATE_WINDOW", cls.stream_duplicate_window
            ),
            "fault_retry_max": _float(env, "FAULT_RETRY_MAX", cls.fault_retry_max),
            "disk_free_min": env.get("DISK_FREE_MIN", cls.disk_free_min).strip() or "0",
            "log_level": (env.get("LOG_LEVEL") or cls.log_level).upper(),
            "backup_path": Path(env["BACKUP_PATH"])
            if env.get("BACKUP_PATH")
            else data_path / "backups",
            "backup_interval": _float(
                env, "BACKUP_INTERVAL", cls.backup_interval, zero_allowed=True
            ),
            "backup_keep_daily": _int(env, "BACKUP_KEEP_DAILY", cls.backup_keep_daily, 0, 3660),
            "backup_keep_weekly": _int(env, "BACKUP_KEEP_WEEKLY", cls.backup_keep_weekly, 0, 520),
            "archive_path": Path(env["ARCHIVE_PATH"])
            if env.get("ARCHIVE_PATH")
            else data_path / "archive",
            "archive_after_days": _float(
                env, "ARCHIVE_AFTER_DAYS", cls.archive_after_days, zero_allowed=True
            ),
            "archive_interval": _float(env, "ARCHIVE_INTERVAL", cls.archive_interval),
            "stream_max_age_days": _float(
                env, "STREAM_MAX_AGE_DAYS", cls.stream_max_age_days, zero_allowed=True
            ),
        }
        return cls(**values)

    def __post_init__(self) -> None:
        if not self.nats_url.strip():
            raise SettingsError("NATS_URL is empty; set it to e.g. nats://127.0.0.1:4222")
        for url in self.nats_url.split(","):
            if "://" not in url:
                raise SettingsError(f"NATS_URL {url!r} has no scheme; write it as nats://host:port")
        if self.duckdb_memory_limit and not _SIZE.match(self.duckdb_memory_limit.strip()):
            raise SettingsError(
                f"DUCKDB_MEMORY_LIMIT {self.duckdb_memory_limit!r} is not a size; "
                "write it like 256MB or 1GB"
            )
        if self.disk_free_min != "0" and not _SIZE.match(self.disk_free_min):
            raise SettingsError(
                f"DISK_FREE_MIN {self.disk_free_min!r} is not a size; write it like 512MB or "
                "2GB (0: no warning)"
            )
        if self.log_level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise SettingsError(
                f"LOG_LEVEL {self.log_level!r} is not one of DEBUG, INFO, WARNING, ERROR"
            )
        if self.checkpoint_interval < 0:
            raise SettingsError("CHECKPOINT_INTERVAL must be 0 or a positive number of seconds")
        if self.heartbeat_interval <= 0:
            raise SettingsError("HEARTBEAT_INTERVAL must be a positive number of seconds")
        for name, days in (
            ("ARCHIVE_AFTER_DAYS", self.archive_after_days),
            ("STREAM_MAX_AGE_DAYS", self.stream_max_age_days),
        ):
            if days > MAX_DAYS:
                raise SettingsError(f"{name}={days:g} is more than {MAX_DAYS} days")
        if self.stream_max_age_days and (
            not self.archive_after_days
            or self.stream_max_age_days < self.archive_after_days + RETENTION_MARGIN_DAYS
        ):
            raise SettingsError(
                f"STREAM_MAX_AGE_DAYS={self.stream_max_age_days:g} would let the stream delete "
                "events before they are archived: set ARCHIVE_AFTER_DAYS and keep "
                f"STREAM_MAX_AGE_DAYS at least ARCHIVE_AFTER_DAYS + {RETENTION_MARGIN_DAYS:g}"
                ' (docs/OPERATIONS.md, "Archive and retention")'
            )
        if self.duckdb_path.exists() and self.duckdb_path.is_dir():
            raise SettingsError(f"DUCKDB_PATH {str(self.duckdb_path)!r} is a directory")

    @property
    def disk_free_min_bytes(self) -> int:
        """``disk_free_min`` in bytes (0: no warning)."""
        return size_in_bytes(self.disk_free_min)

    @classmethod
    def documented_names(cls) -> list[str]:
        """Field names, for the test that keeps docs/OPERATIONS.md complete."""
        return [f.name for f in fields(cls)]


_UNITS = {"b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4}
_UNITS.update({"kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4})


def size_in_bytes(text: str) -> int:
    """``512MB``, ``1.5GiB``… in bytes (as DuckDB reads sizes: KB = 1000, KiB = 1024)."""
    match = re.match(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$", text)
    if match is None:
        raise SettingsError(f"{text!r} is not a size")
    unit = match[2].lower() or "b"
    if unit not in _UNITS:
        raise SettingsError(f"{text!r} is not a size")
    return int(float(match[1]) * _UNITS[unit])


def _int(
    env: Mapping[str, str], name: str, default: int, minimum: int = 0, maximum: int | None = None
) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a whole number") from None
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise SettingsError(f"{name}={value} must be {bounds}")
    return value


def _float(
    env: Mapping[str, str], name: str, default: float, *, zero_allowed: bool = False
) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise SettingsError(f"{name}={raw} is not a finite number")
    if value < 0 or (value == 0 and not zero_allowed):
        floor = "0 or more" if zero_allowed else "greater than 0"
        raise SettingsError(f"{name}={raw} must be {floor}")
    return value
