"""Pipeline: the applied stream position, counters and rejected events.

Tables (DDL in ``migrations/m0001_initial.py``): ``pipeline_state`` (one row, written
in the same transaction as each batch's data: exactly once on restart; it also holds
the central site's latest event time, ``aggregates/sites.py``) and
``rejected_events`` (raw bytes, subject, sequence and reason of every bad event).
``pipeline_state`` is a view since ``migrations/m0016_pipeline_state_deltas.py``: its
folded row ``pipeline_state_base`` and one delta row per batch since the last fold
(``PIPELINE_STATE``), counters added up and the sequence and times their maxima.
The store keeps the state it last committed in memory (``State``,
``Store.pipeline_state``), and the ``pipeline`` query reads it there rather than sum
the view.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import duckdb
import numpy as np

from materializer import continuity, events
from materializer.aggregates import staged
from materializer.aggregates.batch import Batch, md5_halves
from materializer.aggregates.columns import (
    Column,
    blobs,
    ints,
    repeated,
    strings,
    times,
    uint64s,
)
from materializer.aggregates.deltas import Folded
from materializer.aggregates.history import History
from materializer.queries import Cursor, QueryContext, QueryResult, Select, implements, utc
from pulse_bi.contract import SITE_HEADER, UtcTime, registry

SPEC = registry.PIPELINE_STATE

#: The pipeline state as a delta: a batch appends one row with the others' delta rows,
#: which costs no statement of its own (an UPDATE of the one row cost each batch one).
#: The stream's sequence only grows, so the last applied one is the maximum. Its row
#: keeps its columns in the other aggregates' columns of ``deltas.DELTAS`` (m0016).
PIPELINE_STATE = Folded(
    "pipeline_state",
    keys=("id",),
    sums=("events_applied", "events_rejected", "events_duplicate", "batches"),
    latest=("last_sequence", "last_event_time", "last_batch_at", "central_last_event_time"),
    # A batch of duplicates and rejects applies no event, and one of named sites none of
    # the central site's.
    nullable=("last_event_time", "central_last_event_time"),
    slots=(
        ("id", "1"),
        ("last_sequence", "orders"),
        ("events_applied", "cancelled_orders"),
        ("events_rejected", "units"),
        ("events_duplicate", "cancelled_units"),
        ("batches", "on_hand"),
        ("last_event_time", "hour"),
        ("last_batch_at", "last_movement_at"),
    ),
)
FOLDED = (PIPELINE_STATE,)


@dataclass(frozen=True, slots=True)
class State:
    """The pipeline state as committed: the view's row and the totals of the stream's
    gaps (``continuity.GAP_TOTALS``), recorded in the same transactions.

    The store keeps the last committed state in memory (``Store.pipeline_state``): read from
    the file at open, then each batch's row added to it after its COMMIT, as the view
    adds the rows (``after``). The ``pipeline`` query, refreshed after every batch for
    each live subscription to it, then reads nothing from the file, where the view's
    sums over the rows waiting cost 0.7-1.2 ms a read (docs/BENCHMARKS.md, "The pipeline
    state as a delta", "The pipeline state from memory").
    """

    last_sequence: int = 0
    events_applied: int = 0
    events_rejected: int = 0
    events_duplicate: int = 0
    batches: int = 0
    last_event_time: datetime | None = None
    last_batch_at: datetime | None = None
    central_last_event_time: datetime | None = None
    gap_count: int = 0
    events_missing: int = 0

    def after(self, row: State) -> State:
        """This state with a batch's row added: counters summed, the sequence and the
        times their maxima, a missing time skipped (``PIPELINE_STATE``'s view)."""
        values: dict[str, Any] = {
            name: getattr(self, name) + getattr(row, name) for name in _SUMMED
        }
        for name in PIPELINE_STATE.latest:
            mine, theirs = getattr(self, name), getattr(row, name)
            values[name] = theirs if mine is None else mine if theirs is None else max(mine, theirs)
        return State(**values)

    def counters(self) -> dict[str, Any]:
        """The position, counters and times ``/stats`` and ``/health`` show."""
        return {name: getattr(self, name) for name in _COUNTERS}

    def with_gaps(self, gaps: Sequence[continuity.Gap]) -> State:
        """A batch's row with the gaps recorded before it."""
        if not gaps:  # nearly every batch
            return self
        return dataclasses.replace(
            self, gap_count=len(gaps), events_missing=sum(gap.events for gap in gaps)
        )


_COUNTERS = (
    "last_sequence",
    "events_applied",
    "events_rejected",
    "events_duplicate",
    "batches",
    "last_event_time",
    "last_batch_at",
)
#: What ``State.after`` sums; every other field is one of the view's maxima. A column
#: added to ``PIPELINE_STATE`` without its field here fails on import.
_SUMMED = (*PIPELINE_STATE.sums, "gap_count", "events_missing")
if {f.name for f in dataclasses.fields(State)} != {*_SUMMED, *PIPELINE_STATE.latest}:
    raise TypeError("pipeline.State must hold PIPELINE_STATE's columns and the gap totals")


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
) -> State:
    """Store rejects and new keys and advance the pipeline state, in the batch's
    transaction; returns the state's row (``State``, without the gaps), for the store to
    add once the batch committed.

    Its statements are plain appends: they join the batch's queue, which
    ``Batch.finish`` runs, and the state's row joins the batch's one append to the
    deltas (``PIPELINE_STATE``)."""
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
    row = State(
        last_sequence=last_sequence,
        events_applied=applied,
        events_rejected=len(batch.rejects),
        events_duplicate=duplicates,
        batches=1,
        last_event_time=last_event_time,
        # As DuckDB keeps it: microseconds, the same instant the view reads back.
        last_batch_at=datetime.now(UTC),
        central_last_event_time=batch.central_last_event_time,
    )
    delta: dict[str, Column] = {"site": repeated("", 1)}  # NOT NULL in every delta row
    for name in PIPELINE_STATE.sums:
        delta[name] = ints([getattr(row, name)])
    for name in PIPELINE_STATE.latest:
        value = getattr(row, name)
        delta[name] = _instant(value) if name != "last_sequence" else ints([value])
    batch.append_delta(PIPELINE_STATE, delta)
    return row


def _instant(value: datetime | None) -> Column:
    """One TIMESTAMPTZ, NULL for None (NaT, which the maxima skip)."""
    if value is None:
        return Column(np.array(["NaT"], "datetime64[us]"), "timezone('UTC', {})")
    return times([value])


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
        f"UPDATE {PIPELINE_STATE.base} SET last_sequence = ?, events_applied = ?,"
        " events_rejected = ?,"
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


#: The view's columns in ``State``'s order, then the gap totals (its last two fields).
_STATE = (
    f"SELECT {', '.join(f's.{f.name}' for f in dataclasses.fields(State)[:-2])},"
    f" g.gap_count, g.events_missing FROM pipeline_state s"
    f" CROSS JOIN ({continuity.GAP_TOTALS}) g WHERE s.id = 1"
)


def read_state(cur: duckdb.DuckDBPyConnection) -> State:
    """The pipeline state as the file holds it (the view and the gaps' totals)."""
    row = cur.execute(_STATE).fetchone()
    assert row is not None
    values: list[Any] = [
        value.astimezone(UTC) if isinstance(value, datetime) else value for value in row
    ]
    return State(*values)


def state(cur: duckdb.DuckDBPyConnection) -> dict[str, object]:
    """The pipeline state row as the file holds it, as ``State.counters``."""
    return read_state(cur).counters()


# Named queries ----------------------------------------------------------------------


_HORIZON = "SELECT coalesce(max(horizon), 0) FROM archive_state WHERE id = 1"


@implements(registry.PIPELINE)
def pipeline(
    cur: duckdb.DuckDBPyConnection, params: registry.NoParams, context: QueryContext
) -> QueryResult[registry.PipelineRow]:
    """Applied position, counters, lag behind the stream, lost data and health.

    It is refreshed after every batch for each live subscription to it, so it reads
    the file as little as it can: the state as committed comes from the store's memory
    (``State``), the archive horizon from the materializer's lifecycle; only a store
    without them (a tool's) reads them, and the gaps are listed only when there are some.
    """
    state = context.pipeline if context.pipeline is not None else read_state(cur)
    last = state.last_sequence
    gap_count = state.gap_count
    lifecycle = context.lifecycle()
    horizon = lifecycle.get("archive_horizon")
    if horizon is None:
        (horizon,) = cur.execute(_HORIZON).fetchall()[0]
    # Not clamped to the applied sequence: a stream that ends before it is not the
    # stream the file was built from, and must show (docs/OPERATIONS.md).
    known = context.stream_last_sequence
    stream_last = last if known is None else known
    status, reason = context.health()
    return QueryResult(
        registry.PipelineRow(
            status=status,
            reason=reason,
            last_sequence=last,
            stream_last_sequence=stream_last,
            lag=max(0, stream_last - last),
            gap_count=gap_count,
            events_missing=state.events_missing,
            # Gaps are rare: listed by a statement only when there are some.
            gaps=continuity.recent_gaps(cur) if gap_count else [],
            events_applied=state.events_applied,
            events_rejected=state.events_rejected,
            batches=state.batches,
            last_event_time=utc(state.last_event_time),
            last_batch_at=utc(state.last_batch_at),
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
