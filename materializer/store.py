"""The store: a batch of raw stream messages in, one DuckDB transaction out; named reads.

Per batch: decode and validate every message (``materializer.events``), drop event ids
seen earlier in the batch, resolve every key the aggregates need (seen event ids,
existing orders, invoices, cancellations) with ONE join against ``seen_keys``, let each
aggregate apply its events with set-based SQL, then record rejects, new keys and the
pipeline state, and commit. Python work per event is one msgspec decode and a few
appends; everything else is about twenty statements per batch, none per event.

Seen event ids and keys are md5 hashes in tables without an index: a primary key's ART
index costs ~60 bytes per key in memory (it ran out of a 200 MB budget at 3.2M keys),
while one hash join per batch against an unindexed table keeps memory flat.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from materializer import db, events
from materializer.aggregates import AGGREGATES, pipeline
from materializer.aggregates.batch import Accepted, Batch, strings
from materializer.queries import BadQuery, QueryContext, QueryResult, run
from pulse_bi.contract import Changes

__all__ = ["BadQuery", "BatchResult", "QueryResult", "RawMessage", "Store"]

#: Raw tables that hold the id of every event ever stored (valid or rejected).
_EVENT_ID_TABLES = (
    "order_events",
    "order_cancellations",
    "invoice_events",
    "payment_events",
    "stock_events",
    "product_events",
    "customer_events",
    "rejected_events",
)


def _confirm_seen(cur: duckdb.DuckDBPyConnection, candidates: list[str]) -> set[str]:
    """The candidate event ids that really were stored before.

    ``seen_events`` holds 64-bit hashes, so a hit may be a collision; the raw tables
    decide. Only re-delivered events (rare) and collisions (rarer) get here.
    """
    if not candidates:
        return set()
    union = " UNION ALL ".join(f"SELECT event_id FROM {table}" for table in _EVENT_ID_TABLES)
    rows = cur.execute(
        f"SELECT DISTINCT event_id FROM ({union}) WHERE event_id IN (SELECT unnest(?::VARCHAR[]))",
        [candidates],
    ).fetchall()
    return {event_id for (event_id,) in rows}


@dataclass(frozen=True, slots=True)
class RawMessage:
    """One stream message as received."""

    sequence: int  # JetStream stream sequence
    subject: str
    data: bytes  # message payload as received
    received_at: datetime  # JetStream timestamp (aware, UTC)


@dataclass(slots=True)
class BatchResult:
    """What one committed batch did."""

    first_sequence: int
    last_sequence: int
    applied: int  # events stored as valid
    rejected: int  # events stored as rejected
    duplicates: int  # same event id seen before: no-op
    aggregates: set[str]  # subset of contract.AGGREGATES touched ("pipeline" always)
    changes: Changes = field(default_factory=Changes)
    last_event_time: datetime | None = None


class Store:
    """The materializer's DuckDB file: single writer thread, concurrent readers."""

    def __init__(self, conn: duckdb.DuckDBPyConnection) -> None:
        self.conn = conn
        self._last_sequence = int(pipeline.state(conn)["last_sequence"])  # type: ignore[call-overload]
        self._readers = threading.local()
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._cursors_lock = threading.Lock()
        #: Last sequence of the stream as seen by the consumer; shown as lag in ``pipeline``.
        self.stream_last_sequence = 0

    @classmethod
    def open(
        cls, path: str | Path, *, memory_limit: str | None = None, threads: int | None = None
    ) -> Store:
        """Open or create the DuckDB file read-write and apply pending migrations."""
        conn = db.connect(path, memory_limit=memory_limit, threads=threads)
        try:
            db.apply_migrations(conn)
        except BaseException:
            conn.close()
            raise
        return cls(conn)

    def last_sequence(self) -> int:
        """Last applied stream sequence (0 when empty)."""
        return self._last_sequence

    def apply_batch(self, messages: Sequence[RawMessage]) -> BatchResult:
        """Apply messages newer than ``last_sequence()`` in one transaction."""
        last = self._last_sequence
        fresh = [m for m in messages if m.sequence > last]
        if not fresh:
            return BatchResult(last, last, 0, 0, 0, {"pipeline"})
        cur = self.conn
        cur.execute("BEGIN")
        try:
            result = self._apply(cur, fresh)
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        self._last_sequence = result.last_sequence
        return result

    def _apply(self, cur: duckdb.DuckDBPyConnection, messages: list[RawMessage]) -> BatchResult:
        batch = Batch(cur)
        by_type = batch.events
        ids: dict[str, int] = {}  # event id -> sequence
        duplicates = 0
        decode = events.decode
        Event = events.Event
        # Decoding allocates many small objects that cannot form cycles; the collector
        # would only burn time walking them.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            for message in messages:
                decoded = decode(message.subject, message.data)
                event_id = decoded.id
                if event_id is not None:
                    if event_id in ids:
                        duplicates += 1
                        continue
                    ids[event_id] = message.sequence
                if type(decoded) is Event:
                    accepted = Accepted(
                        message.sequence,
                        event_id,  # type: ignore[arg-type]
                        decoded.time,
                        decoded.data,
                        message,
                    )
                    group = by_type.get(decoded.type)
                    if group is None:
                        by_type[decoded.type] = [accepted]
                    else:
                        group.append(accepted)
                else:
                    batch.rejects.append(
                        (
                            message.sequence,
                            message.subject,
                            event_id,
                            decoded.type,
                            decoded.reason,  # type: ignore[union-attr]
                            message.data,
                            message.received_at,
                        )
                    )
        finally:
            if gc_was_enabled:
                gc.enable()
        duplicates += self._resolve_keys(batch, ids)
        batch.event_ids = list(ids)
        accepted_count = sum(len(group) for group in by_type.values())
        early_rejects = len(batch.rejects)
        for module in AGGREGATES:
            module.apply(batch)
        # An aggregate may still reject an accepted event (an order id created again).
        applied = accepted_count - (len(batch.rejects) - early_rejects)
        last_event_time = max((e.time for group in by_type.values() for e in group), default=None)
        pipeline.record(
            batch,
            last_sequence=messages[-1].sequence,
            applied=applied,
            duplicates=duplicates,
            last_event_time=last_event_time,
        )
        return BatchResult(
            first_sequence=messages[0].sequence,
            last_sequence=messages[-1].sequence,
            applied=applied,
            rejected=len(batch.rejects),
            duplicates=duplicates,
            aggregates=batch.aggregates,
            changes=Changes(
                sales_hours=sorted(batch.sales_hours),
                channels=sorted(batch.channels),
                skus=sorted(batch.skus),
                warehouses=sorted(batch.warehouses),
                customers=sorted(batch.customers),
                receivables=batch.receivables,
                products=batch.products,
            ),
            last_event_time=last_event_time,
        )

    @staticmethod
    def _resolve_keys(batch: Batch, ids: dict[str, int]) -> int:
        """Look up the batch's keys in ``seen_keys`` and its event ids in ``seen_events``
        (one hash join each: the batch is the small build side); drop seen events.

        Returns how many events turned out to be duplicates.
        """
        keys: list[str] = []
        for module in AGGREGATES:
            keys.extend(module.probe(batch))
        cur = batch.cur
        if keys:
            probe_keys = pa.table({"key": strings(keys)})  # noqa: F841 - read by DuckDB below
            rows = cur.execute(
                "SELECT p.key, s.sequence FROM (SELECT key, md5_number(key) AS k"
                " FROM probe_keys) p JOIN seen_keys s ON s.k = p.k"
            ).fetchall()
            batch.found = dict(rows)
        probe_events = pa.table({"id": strings(ids)})  # noqa: F841 - read by DuckDB below
        candidates = cur.execute(
            "SELECT id FROM probe_events SEMI JOIN seen_events s ON s.h = md5_number_lower(id)"
        ).fetchall()
        seen = _confirm_seen(cur, [event_id for (event_id,) in candidates])
        if not seen:
            return 0
        # Rare: re-delivered events. Remove them everywhere before anything is applied.
        for event_id in seen:
            del ids[event_id]
        removed = 0
        for event_type, group in batch.events.items():
            kept = [e for e in group if e.event_id not in seen]
            removed += len(group) - len(kept)
            batch.events[event_type] = kept
        kept_rejects = [r for r in batch.rejects if r[2] not in seen]
        removed += len(batch.rejects) - len(kept_rejects)
        batch.rejects = kept_rejects
        return removed

    def stats(self) -> dict[str, Any]:
        """Pipeline state: last_sequence, counters, last event time, last batch time."""
        return pipeline.state(self._reader())

    def _reader(self) -> duckdb.DuckDBPyConnection:
        # One cursor per thread: a DuckDB cursor is not safe to share between threads.
        cursor: duckdb.DuckDBPyConnection | None = getattr(self._readers, "cursor", None)
        if cursor is None:
            with self._cursors_lock:
                cursor = self.conn.cursor()
                self._cursors.append(cursor)
            self._readers.cursor = cursor
        return cursor

    def query(
        self, name: str, params: Mapping[str, Any], *, context: QueryContext | None = None
    ) -> QueryResult:
        """Answer a named query on this thread's own cursor; raises ``BadQuery``."""
        if context is None:
            context = QueryContext(stream_last_sequence=self.stream_last_sequence)
        return run(self._reader(), name, params, context)

    def close(self) -> None:
        """Close the readers' cursors, then the database."""
        with self._cursors_lock:
            for cursor in self._cursors:
                cursor.close()
            self._cursors.clear()
        self.conn.close()
