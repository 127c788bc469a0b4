"""Pipeline: the applied stream position, counters and rejected events.

Tables (DDL in ``migrations/m0001_initial.py``): ``pipeline_state`` (one row, written
in the same transaction as each batch's data: exactly once on restart; it also holds
the central site's latest event time, ``aggregates/sites.py``) and
``rejected_events`` (raw bytes, subject, sequence and reason of every bad event).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import duckdb

from materializer import continuity, events
from materializer.aggregates import staged
from materializer.aggregates.batch import Batch, md5_halves
from materializer.aggregates.columns import blobs, ints, strings, times, uint64s
from materializer.aggregates.history import History
from materializer.queries import Cursor, QueryContext, QueryResult, Select, implements, utc
from pulse_bi.contract import SITE_HEADER, UtcTime, registry

SPEC = registry.PIPELINE_STATE


def probe(batch: Batch) -> list[str]:
    """Event ids are probed by the store itself."""
    return []


def apply(batch: Batch) -> None:
    """Nothing per event; ``record`` writes the state once the batch is applied."""


def record(
    batch: Batch,
    *,
    last_sequence: int,
    applied: int,
    duplicates: int,
    last_event_time: datetime | None,
) -> None:
    """Store rejects and new keys and advance the pipeline state, in the batch's transaction.

    Its statements are plain (appends, an update of one row by key): they join the
    batch's queue, which ``Batch.finish`` runs."""
    if batch.rejects:
        columns = list(zip(*batch.rejects, strict=True))
        batch.insert(
            "rejected_events",
            {
                "sequence": ints(columns[0]),
                "subject": strings(columns[1]),
                "event_id": strings(columns[2]),
                "event_type": strings(columns[3]),
                "reason": strings(columns[4]),
                "raw": blobs(columns[5]),
                "received_at": times(columns[6]),
            },
        )
    if len(batch.event_digests):
        batch.insert("seen_events", {"h": uint64s(batch.event_digests[:, 1])})
    if batch.new_keys:
        halves = md5_halves(batch.new_keys)
        batch.key_hashes = halves
        batch.insert(
            "seen_keys",
            {
                "hi": uint64s(halves[:, 1]),
                "lo": uint64s(halves[:, 0]),
                "sequence": ints(batch.new_key_sequences),
            },
        )
    batch.plain(
        "UPDATE pipeline_state SET last_sequence = ?, events_applied = events_applied + ?,"
        " events_rejected = events_rejected + ?, events_duplicate = events_duplicate + ?,"
        " batches = batches + 1,"
        " last_event_time = greatest(last_event_time, ?::TIMESTAMPTZ), last_batch_at = ?,"
        " central_last_event_time = greatest(central_last_event_time, ?::TIMESTAMPTZ)"
        " WHERE id = 1",
        [
            last_sequence,
            applied,
            len(batch.rejects),
            duplicates,
            last_event_time,
            datetime.now(UTC),
            batch.central_last_event_time,
        ],
    )


def rebuild(history: History) -> None:
    """Rejects, seen event ids and the pipeline state after the history.

    Every message was applied, rejected or a duplicate: duplicates are the messages
    that left no row. The last event time is that of the latest applied event or of an
    event an aggregate rejected while applying it (``apply`` counts those too; a
    message rejected by the decoder, for its ``Pulse-Site`` header or stored as an internal
    dead letter does not).
    """
    cur = history.cur
    rejected = history.of("rejected_events")
    cur.execute(f"INSERT INTO rejected_events BY NAME SELECT * FROM {rejected}")
    applied = " UNION ALL ".join(
        f"SELECT event_id, time FROM {history.of(table)}" for table in registry.RAW_TABLES
    )
    ids = staged.base("seen_events")
    cur.execute(f"INSERT INTO {ids} SELECT md5_number_lower(event_id) FROM ({applied})")
    row = cur.execute(
        f"SELECT (SELECT count(*) FROM ({applied})), (SELECT max(time) FROM ({applied})),"
        f" (SELECT count(*) FROM {rejected}), (SELECT count(*) FROM {history.messages})"
    ).fetchone()
    assert row is not None
    applied_count, last_time, rejected_count, messages = row
    # A bad Pulse-Site header is rejected before any aggregate sees the event, though
    # its raw bytes decode as a valid event: its time does not count either.
    late = cur.execute(
        f"SELECT subject, raw FROM {rejected} WHERE event_type IS NOT NULL"
        " AND NOT starts_with(reason, 'internal: ') AND NOT starts_with(reason, ?)",
        [f"{SITE_HEADER} header: "],
    ).fetchall()
    for subject, raw in late:
        decoded = events.decode(subject, bytes(raw))
        if isinstance(decoded, events.Event) and (last_time is None or decoded.time > last_time):
            last_time = decoded.time
    cur.execute(
        "UPDATE pipeline_state SET last_sequence = ?, events_applied = ?, events_rejected = ?,"
        " events_duplicate = ?, batches = ?, last_event_time = ?, last_batch_at = ? WHERE id = 1",
        [
            history.last_sequence,
            applied_count,
            rejected_count,
            messages - applied_count - rejected_count,
            history.runs,
            last_time,
            datetime.now(UTC),
        ],
    )


def state(cur: duckdb.DuckDBPyConnection) -> dict[str, object]:
    """The pipeline state row as a dict of Python values."""
    row = cur.execute(
        "SELECT last_sequence, events_applied, events_rejected, events_duplicate, batches,"
        " last_event_time, last_batch_at FROM pipeline_state WHERE id = 1"
    ).fetchone()
    assert row is not None
    keys = (
        "last_sequence",
        "events_applied",
        "events_rejected",
        "events_duplicate",
        "batches",
        "last_event_time",
        "last_batch_at",
    )
    return dict(zip(keys, row, strict=True))


# Named queries ----------------------------------------------------------------------


#: Everything the ``pipeline`` query reads from the file, in one statement: it is
#: refreshed after every batch for each live subscription to it, and each statement
#: costs DuckDB's fixed ~0.4 ms (docs/BENCHMARKS.md, "The pipeline query in one read").
_PIPELINE = (
    "SELECT s.last_sequence, s.events_applied, s.events_rejected, s.batches,"
    " s.last_event_time, s.last_batch_at, g.gap_count, g.events_missing,"
    " coalesce(a.horizon, 0) FROM pipeline_state s"
    f" CROSS JOIN ({continuity.GAP_TOTALS}) g LEFT JOIN archive_state a ON a.id = 1"
    " WHERE s.id = 1"
)


@implements(registry.PIPELINE)
def pipeline(
    cur: duckdb.DuckDBPyConnection, params: registry.NoParams, context: QueryContext
) -> QueryResult[registry.PipelineRow]:
    """Applied position, counters, lag behind the stream, lost data and health."""
    row = cur.execute(_PIPELINE).fetchone()
    assert row is not None
    last, applied, rejected, batches, event_time, batch_at, gap_count, missing, horizon = row
    # Not clamped to the applied sequence: a stream that ends before it is not the
    # stream the file was built from, and must show (docs/OPERATIONS.md).
    known = context.stream_last_sequence
    stream_last = last if known is None else known
    status, reason = context.health()
    lifecycle = context.lifecycle()
    return QueryResult(
        registry.PipelineRow(
            status=status,
            reason=reason,
            last_sequence=last,
            stream_last_sequence=stream_last,
            lag=max(0, stream_last - last),
            gap_count=gap_count,
            events_missing=int(missing),
            # Gaps are rare: listed by a second statement only when there are some.
            gaps=continuity.recent_gaps(cur) if gap_count else [],
            events_applied=applied,
            events_rejected=rejected,
            batches=batches,
            last_event_time=utc(event_time),
            last_batch_at=utc(batch_at),
            version=last,
            # Data lifecycle (docs/OPERATIONS.md, "Backup", "Archive and retention").
            last_backup_at=_time(lifecycle.get("last_backup_at")),
            last_backup_sequence=lifecycle.get("last_backup_sequence"),
            archive_horizon=horizon,
            file_bytes=lifecycle.get("file_bytes"),
            disk_free_bytes=lifecycle.get("disk_free_bytes"),
        )
    )


def _time(text: str | None) -> datetime | None:
    return utc(datetime.fromisoformat(text)) if text else None


def _rejected(row: tuple[Any, ...]) -> registry.RejectedEventRow:
    sequence, subject, event_id, event_type, reason, received_at, raw = row
    return registry.RejectedEventRow(
        sequence=int(sequence),
        subject=subject,
        event_id=event_id,
        event_type=event_type,
        reason=reason,
        received_at=UtcTime.of(received_at),
        raw=bytes(raw).decode("utf-8", errors="replace"),
    )


@implements(registry.REJECTED_EVENTS)
def rejected_events(cur: Cursor, params: registry.RejectedParams, _: QueryContext) -> Select:
    """Rejected events, newest first, raw bytes shown as (lossy) text."""
    columns = "sequence, subject, event_id, event_type, reason, received_at, raw"
    return Select(f"SELECT {columns} FROM rejected_events ORDER BY sequence DESC", (), _rejected)
