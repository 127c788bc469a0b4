"""The store: a batch of raw stream messages in, one DuckDB transaction out; named reads.

Per batch: decode and validate every message (``materializer.events``), drop event ids
seen earlier in the batch, resolve every key the aggregates need (seen event ids,
existing orders, invoices, cancellations) in memory, let each aggregate apply its events
with set-based SQL, then record rejects, new keys and the pipeline state, and commit.
Python work per event is one msgspec decode, an md5 and a few appends; everything else
is about fifteen statements per batch, none per event.

Seen event ids and keys are md5 hashes in tables without an index (``seen_events``,
``seen_keys``): a primary key's ART index costs ~60 bytes per key in memory (it ran out
of a 200 MB budget at 3.2M keys). The store keeps a sorted numpy copy of both
(``SeenIndex``: 8 bytes per event id, 24 per key), loaded at open and extended after
each commit, and looks a batch up with a binary search: a join against the tables
scanned all of them per batch, ~47 ms at 5M events and growing with history.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import numpy as np
import numpy.typing as npt

from materializer import db, events
from materializer.aggregates import AGGREGATES, pipeline
from materializer.aggregates.batch import Accepted, Batch, md5_halves
from materializer.queries import BadQuery, QueryContext, QueryResult, run
from pulse_bi.contract import Changes

__all__ = ["BadQuery", "BatchResult", "QueryResult", "RawMessage", "Store"]

_T = TypeVar("_T")

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


U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]


class _SortedHashes:
    """Sorted 64-bit hashes, each with an optional second hash word (checked on a hit)
    and an optional int64 value: a large ``base`` and a small ``delta`` merged into it
    when it grows past ``MERGE_AT``, so adding a batch costs O(delta), not O(history).
    """

    MERGE_AT = 1 << 16

    def __init__(self, primary: U64, check: U64 | None = None, values: I64 | None = None):
        self._has_check = check is not None
        self._has_values = values is not None
        order = np.argsort(primary, kind="stable")
        self._base = self._columns(primary, check, values, order)
        self._delta = self._columns(
            np.empty(0, np.uint64),
            np.empty(0, np.uint64) if self._has_check else None,
            np.empty(0, np.int64) if self._has_values else None,
            None,
        )

    @staticmethod
    def _columns(primary: U64, check: U64 | None, values: I64 | None, order: Any) -> list[Any]:
        columns: list[Any] = [primary, check, values]
        if order is not None:
            columns = [None if c is None else c[order] for c in columns]
        return columns

    def __len__(self) -> int:
        return len(self._base[0]) + len(self._delta[0])

    def find(self, primary: U64, check: U64 | None = None) -> tuple[Any, I64]:
        """Which queries are present (bool mask) and their value (0 when absent)."""
        found = np.zeros(len(primary), bool)
        values = np.zeros(len(primary), np.int64)
        for level in (self._base, self._delta):
            hit, at = self._find(level, primary, check)
            found |= hit
            if self._has_values and hit.any():
                values[hit] = level[2][at[hit]]
        return found, values

    def _find(self, level: list[Any], primary: U64, check: U64 | None) -> tuple[Any, Any]:
        keys: U64 = level[0]
        size = len(keys)
        if size == 0 or len(primary) == 0:
            return np.zeros(len(primary), bool), np.zeros(len(primary), np.intp)
        at = np.minimum(np.searchsorted(keys, primary), size - 1)
        hit = keys[at] == primary
        if check is None or not self._has_check:
            return hit, at
        seconds: U64 = level[1]
        confirmed = hit & (seconds[at] == check)
        # Rare: the same first word more than once (a 64-bit collision): look further.
        for i in np.flatnonzero(hit & ~confirmed):
            j = int(at[i]) + 1
            while j < size and keys[j] == primary[i]:
                if seconds[j] == check[i]:
                    confirmed[i] = True
                    at[i] = j
                    break
                j += 1
        return confirmed, at

    def add(self, primary: U64, check: U64 | None = None, values: I64 | None = None) -> None:
        """Add hashes (after the transaction that stored them committed)."""
        if len(primary) == 0:
            return
        order = np.argsort(primary, kind="stable")
        new = self._columns(primary, check, values, order)
        self._merge(self._delta, new)
        if len(self._delta[0]) >= self.MERGE_AT:
            self._merge(self._base, self._delta)
            self._delta = [None if c is None else c[:0].copy() for c in self._delta]

    @staticmethod
    def _merge(into: list[Any], new: list[Any]) -> None:
        # One column at a time, each old column freed as soon as its copy exists: the
        # peak is the index plus one column, not twice the index.
        positions = np.searchsorted(into[0], new[0])
        for i, added in enumerate(new):
            if added is not None:
                into[i] = np.insert(into[i], positions, added)


class SeenIndex:
    """In-memory copy of ``seen_events`` and ``seen_keys`` for lookups without SQL.

    Event ids: the 64-bit ``md5_number_lower`` stored in ``seen_events`` (a hit is
    confirmed against the raw tables). Keys: the full 128-bit ``md5_number`` of
    ``seen_keys`` as two words, with the sequence that created the key.
    """

    def __init__(self, cur: duckdb.DuckDBPyConnection) -> None:
        events = cur.execute("SELECT h FROM seen_events").fetchnumpy()
        self.events = _SortedHashes(np.ascontiguousarray(events["h"], np.uint64))
        keys = cur.execute(
            "SELECT (k & 18446744073709551615::UHUGEINT)::UBIGINT AS lo,"
            " (k >> 64)::UBIGINT AS hi, sequence FROM seen_keys"
        ).fetchnumpy()
        self.keys = _SortedHashes(
            np.ascontiguousarray(keys["lo"], np.uint64),
            np.ascontiguousarray(keys["hi"], np.uint64),
            np.ascontiguousarray(keys["sequence"], np.int64),
        )

    def find_keys(self, keys: list[str]) -> dict[str, int]:
        """The keys that exist, with the sequence that created them."""
        if not keys:
            return {}
        halves = md5_halves(keys)
        found, sequences = self.keys.find(halves[:, 0], halves[:, 1])
        return {keys[i]: int(sequences[i]) for i in np.flatnonzero(found)}


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
        self._seen = SeenIndex(conn)
        self._last_sequence = int(self.read(pipeline.state)["last_sequence"])  # type: ignore[call-overload]
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
            result, batch = self._apply(cur, fresh)
            event_hashes, key_hashes = batch.event_hashes, batch.key_hashes
            key_sequences = np.asarray(batch.new_key_sequences, np.int64)
            del batch  # the batch's events are garbage before the commit writes
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        self._last_sequence = result.last_sequence
        # Only what committed is seen from now on.
        seen = self._seen
        seen.events.add(event_hashes)
        if key_hashes is not None:
            seen.keys.add(key_hashes[:, 0].copy(), key_hashes[:, 1].copy(), key_sequences)
        return result

    def _apply(
        self, cur: duckdb.DuckDBPyConnection, messages: list[RawMessage]
    ) -> tuple[BatchResult, Batch]:
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
        result = BatchResult(
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
        return result, batch

    def _resolve_keys(self, batch: Batch, ids: dict[str, int]) -> int:
        """Look up the batch's keys and event ids in the in-memory ``SeenIndex``; drop
        seen events and keep the new ids (and their hashes) on the batch.

        Returns how many events turned out to be duplicates.
        """
        keys: list[str] = []
        for module in AGGREGATES:
            keys.extend(module.probe(batch))
        batch.found = self._seen.find_keys(keys)
        event_ids = list(ids)
        hashes = md5_halves(event_ids)[:, 1].copy()
        hit, _ = self._seen.events.find(hashes)
        candidates = [event_ids[i] for i in np.flatnonzero(hit)]
        seen = _confirm_seen(batch.cur, candidates)
        if not seen:
            batch.event_ids = event_ids
            batch.event_hashes = hashes
            return 0
        # Rare: re-delivered events. Remove them everywhere before anything is applied.
        for event_id in seen:
            del ids[event_id]
        keep = np.array([event_id not in seen for event_id in event_ids], bool)
        batch.event_ids = list(ids)
        batch.event_hashes = hashes[keep]
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
        return self.read(pipeline.state)

    def read(self, reader: Callable[[duckdb.DuckDBPyConnection], _T]) -> _T:
        """Run ``reader`` on a cursor of its own and close it: every read goes through here.

        A result left open on a long-lived cursor (a ``fetchone()`` on a streaming
        result) keeps its read transaction open: DuckDB then keeps the old version of
        every later commit, spills them to the ``.tmp`` folder and cannot checkpoint, so
        batches slow down by the minute. Closing the cursor ends the transaction.
        ``reader`` must return materialized values (``fetchall``, not a live result).
        A cursor costs a few microseconds (docs/OPERATIONS.md, "Checkpoints").
        """
        with self.conn.cursor() as cursor:
            return reader(cursor)

    def query(
        self, name: str, params: Mapping[str, Any], *, context: QueryContext | None = None
    ) -> QueryResult:
        """Answer a named query on a cursor of its own; raises ``BadQuery``."""
        if context is None:
            context = QueryContext(stream_last_sequence=self.stream_last_sequence)
        return self.read(lambda cursor: run(cursor, name, params, context))

    def checkpoint(self, *, force: bool = False) -> bool:
        """Write the WAL into the database file (on the writer thread, between batches).

        A plain CHECKPOINT lets reads run alongside it, but DuckDB refuses it at once
        while a read is running ("other write transactions active"): then this returns
        False and the caller tries again later. ``force`` (FORCE CHECKPOINT) waits for
        running reads to finish and holds new ones back until it is done.
        """
        try:
            self.conn.execute("FORCE CHECKPOINT" if force else "CHECKPOINT")
        except duckdb.TransactionException:
            if force:
                raise
            return False
        return True

    def close(self) -> None:
        """Close the database (DuckDB checkpoints it on close)."""
        self.conn.close()
