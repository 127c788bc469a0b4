"""The store: a batch of raw stream messages in, one DuckDB transaction out; named reads.

Per batch: decode and validate every message (``materializer.events``), drop event ids
seen earlier in the batch, resolve every key the aggregates need (seen event ids,
existing orders, invoices, cancellations) in memory, let each aggregate apply its events
with set-based SQL, then record rejects, new keys and the pipeline state, and commit.
Python work per event is one msgspec decode, an md5 and a few appends; everything else
is about fifteen statements per batch, none per event. Appends and one-row updates are
plain statements: they wait in the batch's queue and run together with DuckDB's optimizer
off, which has nothing to do for them (``materializer.aggregates.batch.Optimizer``).

Seen event ids and keys are looked up in memory (``materializer.seen``). Only applied
events are seen: every rejected message is stored, keyed by its stream sequence, however
often its id comes (docs/EVENTS.md, "Bad events").

Applying is total, like decoding (docs/EVENTS.md, "Dead letters"): when a batch fails
for a reason that is not the infrastructure's (``materializer.faults``), it is rolled
back and split in halves, each committed on its own, until the event that fails alone
is found; that one is stored as rejected (``internal: <error>``) with its raw bytes and
the rest is applied. Halves commit in stream order, each with its last sequence, so the
result is the same as if the event had been rejected at decode, and a crash between two
halves resumes exactly. An infrastructure fault is raised unchanged.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import duckdb
import msgspec
import numpy as np

from materializer import continuity, db, events, memory, selfcheck
from materializer.aggregates import AGGREGATES, FOLDED, deltas, pipeline, staged
from materializer.aggregates.batch import Accepted, Batch, Optimizer, md5_halves
from materializer.aggregates.columns import EPOCH, from_micros
from materializer.delivery import header_values
from materializer.faults import describe, is_infrastructure
from materializer.limits import clip, site_problem
from materializer.queries import BadQuery, QueryContext, QueryResult, run
from materializer.seen import SeenIndex, confirm_seen
from pulse_bi.contract import SITE_HEADER, Changes

if TYPE_CHECKING:
    from materializer.archive import ArchiveReader

__all__ = ["BadQuery", "BatchResult", "QueryResult", "RawMessage", "Store"]

_T = TypeVar("_T")

#: DuckDB's memory limit for the moment ``Store.release_memory`` drops the blocks of the
#: file it caches (docs/OPERATIONS.md, "Memory").
RELEASE_LIMIT = "1MB"

log = logging.getLogger("pulse_bi.materializer.store")


class RawMessage(msgspec.Struct, frozen=True, gc=False):
    """One stream message as received.

    A msgspec Struct: the consumer builds one per message on the event loop, ~8x faster
    than a frozen dataclass, and never tracked by the cycle collector (its fields
    cannot form cycles; keep it so when adding one).
    """

    sequence: int  # JetStream stream sequence
    subject: str
    data: bytes  # message payload as received
    #: JetStream timestamp: aware UTC, or nanoseconds since the epoch as the consumer
    #: reads them off the ack subject (``received_at`` converts them when asked: most
    #: messages never are, and the conversion costs more than the rest of receiving one).
    received: datetime | int
    #: The ``Pulse-Site`` header as received (None: no header, the central site);
    #: checked when the batch is applied (``limits.site_problem``).
    site: str | None = None

    @property
    def received_at(self) -> datetime:
        """The JetStream timestamp, aware UTC."""
        received = self.received
        if isinstance(received, int):
            return datetime.fromtimestamp(received / 1e9, UTC)
        return received


_SITE_NAME = SITE_HEADER.encode()
_MICROS = attrgetter("micros")
#: ``Store._apply``'s latest event time before it has seen one.
_NO_TIME = -(1 << 62)


def header_site(headers: bytes | Mapping[str, str] | None) -> str | None:
    """The site a message's headers name (docs/EVENTS.md, "Sites"), unchecked: from the
    raw ``NATS/1.0`` header block of a consumer frame, or headers nats-py parsed. A name
    repeated counts once, its last line (as nats-py keeps it)."""
    if not headers:
        return None
    if isinstance(headers, bytes):
        if _SITE_NAME not in headers:  # most events: no site, one search
            return None
        return header_values(headers).get(SITE_HEADER)
    return headers.get(SITE_HEADER)


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
    #: Sequences gone from the stream before this batch, recorded with it (continuity).
    gaps: list[continuity.Gap] = field(default_factory=list)


class Store:
    """The materializer's DuckDB file: single writer thread, concurrent readers."""

    def __init__(self, conn: duckdb.DuckDBPyConnection, memory_limit: str | None = None) -> None:
        #: The writer's connection as it is: batches leave DuckDB's optimizer as their
        #: last run of plain statements left it (``Optimizer``); ``writer`` switches it on.
        self.conn = conn
        #: DuckDB's memory limit as set, restored after ``release_memory`` (None: as
        #: DuckDB reports it).
        self._memory_limit = memory_limit
        #: Reads running, and whether ``release_memory`` holds new ones back.
        self._reads = 0
        self._releasing = False
        self._reads_changed = threading.Condition()
        self._seen = SeenIndex(conn)
        #: DuckDB's optimizer on ``conn``, off while a batch runs plain statements and
        #: left off after it, until a statement that needs it switches it on.
        self._optimizer = Optimizer(conn)
        #: The pipeline state as last committed (``pipeline.State``), the last applied
        #: sequence in it: the ``pipeline`` query reads it here, and each commit adds
        #: its batch's row.
        self._pipeline = self.read(pipeline.read_state)
        #: Rows in the aggregate deltas, folded into their bases at ``deltas.COMPACT_ROWS``.
        self._delta_rows = self.read(lambda cursor: deltas.pending_rows(cursor, FOLDED))
        #: Raw rows in ``raw_staged``, folded into their bases at ``staged.FOLD_ROWS``.
        self._staged_rows = self.read(staged.pending_rows)
        #: Last sequence of the stream as seen by the consumer (None: not known yet);
        #: shown as lag in ``pipeline``.
        self.stream_last_sequence: int | None = None
        #: Raw events older than its horizon are read back from the Parquet archive.
        self.archive: ArchiveReader | None = None

    def writer(self) -> duckdb.DuckDBPyConnection:
        """The store's connection with DuckDB's optimizer on, for the writer thread's
        statements other than a batch's (a rebuild, archiving, the stream's identity): a
        batch leaves it off when its last statements were plain ones (``Optimizer``), and
        a join or a filtered scan without it reads whole tables. ``conn`` is the same
        connection as it is; a cursor of it is a connection of its own, optimizer on."""
        return self._optimizer.on()

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        memory_limit: str | None = None,
        threads: int | None = None,
        row_group_size: int | None = None,
    ) -> Store:
        """Open or create the DuckDB file read-write and apply pending migrations."""
        conn = db.connect(
            path, memory_limit=memory_limit, threads=threads, row_group_size=row_group_size
        )
        try:
            db.apply_migrations(conn, path)
            with db.cursor(conn) as cursor:
                selfcheck.check(cursor)
        except BaseException:
            conn.close()
            raise
        return cls(conn, memory_limit)

    def last_sequence(self) -> int:
        """Last applied stream sequence (0 when empty)."""
        return self._pipeline.last_sequence

    def apply_batch(self, messages: Sequence[RawMessage]) -> BatchResult:
        """Apply messages newer than ``last_sequence()``: one transaction, or several when
        an event makes it fail (split; see the module docstring). Raises infrastructure
        faults (``materializer.faults.is_infrastructure``) unchanged; any other error only
        if even storing the failing message as rejected fails.
        """
        last = self._pipeline.last_sequence
        fresh = [m for m in messages if m.sequence > last]
        if not fresh:
            return BatchResult(last, last, 0, 0, 0, {"pipeline"})
        self.fold_when_due()  # when the caller did not after the batch before
        return self._apply_or_split(fresh)

    def fold_when_due(self) -> bool:
        """Fold the aggregate deltas once they hold ``deltas.COMPACT_ROWS`` rows, else the
        staged raw rows once they hold ``staged.FOLD_ROWS`` (``fold_due``, ``compact``);
        True when it folded. One of the two a call: when both are due the other waits for
        the next call, so a fold never pauses ingest for both at once. The materializer
        calls it after each batch's change notice, so that no notice waits for a fold;
        ``apply_batch`` calls it first for other callers.
        """
        if self._delta_rows >= deltas.COMPACT_ROWS:
            self.compact(raw=False)
        elif self._staged_rows >= staged.FOLD_ROWS:
            self.compact(aggregates=False)
        else:
            return False
        return True

    @property
    def fold_due(self) -> bool:
        """Whether the aggregate deltas hold ``deltas.COMPACT_ROWS`` rows or more, or the
        staged raw rows ``staged.FOLD_ROWS``: counters the writer keeps, cheap to ask on
        any thread between batches."""
        return self._delta_rows >= deltas.COMPACT_ROWS or self._staged_rows >= staged.FOLD_ROWS

    def compact(self, *, aggregates: bool = True, raw: bool = True) -> None:
        """Fold the aggregate deltas and the staged raw rows (either, when told) into
        their bases, in a transaction of its own.

        Runs between batches; it changes how the aggregates and the raw rows are
        stored, not what any read answers, so it needs no change notice.
        """
        cur = self._optimizer.on()
        cur.execute("BEGIN")
        try:
            if aggregates:
                deltas.compact(cur, FOLDED)
            if raw:
                staged.fold(cur)
            cur.execute("COMMIT")
        except BaseException:
            db.rollback(cur)
            raise
        if aggregates:
            self._delta_rows = 0
        if raw:
            self._staged_rows = 0

    def _apply_or_split(self, messages: list[RawMessage]) -> BatchResult:
        try:
            return self._commit(messages)
        except Exception as error:
            if is_infrastructure(error):
                raise
            failed = error
        # Whatever did commit (a failure after COMMIT) must not be applied twice.
        last = self._pipeline.last_sequence
        messages = [m for m in messages if m.sequence > last]
        if not messages:
            return BatchResult(last, last, 0, 0, 0, {"pipeline"})
        if len(messages) == 1:
            return self._dead_letter(messages[0], failed)
        log.warning(
            "batch %d-%d failed on an event (%s): splitting it to find the event",
            messages[0].sequence,
            messages[-1].sequence,
            describe(failed),
        )
        middle = len(messages) // 2
        first = self._apply_or_split(messages[:middle])
        return _merged(first, self._apply_or_split(messages[middle:]))

    def _commit(self, messages: list[RawMessage]) -> BatchResult:
        """Apply ``messages`` in one transaction and commit it.

        The optimizer stays as the batch before left it: the batch switches it on for
        the statements that need it (``Batch.cur``), and a batch that starts with plain
        statements saves two ``SET``s."""
        cur = self._optimizer.conn
        last = self._pipeline.last_sequence
        cur.execute("BEGIN")
        try:
            # A gap before these messages is recorded with them (docs/OPERATIONS.md).
            gaps = continuity.record_gaps(cur, last, [m.sequence for m in messages])
            result, batch, row = self._apply(cur, messages)
            result.gaps = gaps
            event_digests, key_hashes = batch.event_digests, batch.key_hashes
            delta_rows, staged_rows = batch.delta_rows, batch.staged_rows
            key_sequences = np.asarray(batch.new_key_sequences, np.int64)
            del batch  # the batch's events are garbage before the commit writes
            cur.execute("COMMIT")
        except BaseException:
            db.rollback(cur)  # a failed ROLLBACK must not hide why the batch failed
            self._optimizer_on_after_failure()
            raise
        self._pipeline = self._pipeline.after(row.with_gaps(gaps))
        self._delta_rows += delta_rows
        self._staged_rows += staged_rows
        # Only what committed is seen from now on.
        seen = self._seen
        seen.events.add(event_digests[:, 1].copy())
        seen.recent.add(event_digests)
        if key_hashes is not None:
            seen.keys.add(key_hashes[:, 0].copy(), key_hashes[:, 1].copy(), key_sequences)
        return result

    def _dead_letter(self, message: RawMessage, error: Exception) -> BatchResult:
        """Store one message that cannot be applied as rejected, ``internal: <error>``."""
        reason = clip(f"internal: {describe(error)}")
        log.warning("event at sequence %d stored as rejected: %s", message.sequence, reason)
        decoded = events.decode(message.subject, message.data)
        try:
            gaps = self._commit_reject(message, reason, decoded.id, decoded.type)
        except Exception as again:
            if is_infrastructure(again):
                raise
            # Its id or type cannot be stored either: the raw bytes say what they were.
            gaps = self._commit_reject(message, reason, None, None)
        result = BatchResult(message.sequence, message.sequence, 0, 1, 0, {"pipeline"})
        result.gaps = gaps
        return result

    def _commit_reject(
        self, message: RawMessage, reason: str, event_id: str | None, event_type: str | None
    ) -> list[continuity.Gap]:
        cur = self._optimizer.conn
        last = self._pipeline.last_sequence
        cur.execute("BEGIN")
        try:
            gaps = continuity.record_gaps(cur, last, [message.sequence])
            batch = Batch(cur, self._optimizer)
            batch.rejects.append(
                (
                    message.sequence,
                    message.subject,
                    event_id,
                    event_type,
                    reason,
                    message.data,
                    message.received_at,
                )
            )
            row = pipeline.record(
                batch,
                last_sequence=message.sequence,
                applied=0,
                duplicates=0,
                last_event_time=None,
            )
            batch.finish()
            cur.execute("COMMIT")
        except BaseException:
            db.rollback(cur)
            self._optimizer_on_after_failure()
            raise
        self._pipeline = self._pipeline.after(row.with_gaps(gaps))
        # Its row of the pipeline state waits in the deltas like any batch's (m0016).
        self._delta_rows += batch.delta_rows
        self._staged_rows += batch.staged_rows
        return gaps

    def _optimizer_on_after_failure(self) -> None:
        """Switch the optimizer on again after a failed batch (a SET outlives the
        ROLLBACK); never hide the error that failed the batch."""
        try:
            self._optimizer.on()
        except duckdb.Error as exc:
            log.debug("optimizer back on after a failed batch: %s", exc)

    def _apply(
        self, cur: duckdb.DuckDBPyConnection, messages: list[RawMessage]
    ) -> tuple[BatchResult, Batch, pipeline.State]:
        batch = Batch(cur, self._optimizer)
        batch.archive = self.archive
        by_type = batch.events
        ids: dict[str, int] = {}  # event id -> sequence
        duplicates = 0
        decode = events.decode
        Rejection = events.Rejection
        epoch = EPOCH
        known_sites = batch.named_sites
        # Below every time an event may have (year 1 is -62,135,596,800,000,000).
        latest = _NO_TIME
        # Decoding allocates many small objects that cannot form cycles; the collector
        # would only burn time walking them.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            for message in messages:
                decoded = decode(message.subject, message.data)
                site = message.site
                if site is not None and site not in known_sites:
                    problem = site_problem(site)
                    if problem is None:
                        known_sites.add(site)
                    else:
                        decoded = Rejection(problem, decoded.id, decoded.type)
                event_id = decoded.id
                if type(decoded) is not Rejection:  # an Event (of its type's class)
                    # Only valid events are de-duplicated: every rejected message is
                    # stored, whatever its id (docs/EVENTS.md, "Bad events").
                    if event_id in ids:
                        duplicates += 1
                        continue
                    sequence = message.sequence
                    ids[event_id] = sequence  # type: ignore[index]
                    time = decoded.time  # type: ignore[union-attr]
                    since = time - epoch  # ``utc_micros``, inline: once per event
                    micros = (since.days * 86_400 + since.seconds) * 1_000_000 + since.microseconds
                    if micros > latest:  # here, while the event is in the CPU's cache
                        latest = micros
                    accepted = Accepted(
                        sequence,
                        event_id,  # type: ignore[arg-type]
                        time,
                        micros,
                        decoded.data,  # type: ignore[union-attr]
                        message,
                    )
                    group = by_type.get(decoded.type)  # type: ignore[arg-type]
                    if group is None:
                        by_type[decoded.type] = [accepted]  # type: ignore[index]
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
        removed = self._resolve_keys(batch, ids)
        duplicates += removed
        if removed:  # rare: events applied before left the batch, maybe the latest
            latest = max((max(map(_MICROS, g)) for g in by_type.values() if g), default=_NO_TIME)
        batch.latest_micros = None if latest == _NO_TIME else latest
        accepted_count = sum(len(group) for group in by_type.values())
        batch.early_rejects = early_rejects = len(batch.rejects)
        for module in AGGREGATES:
            module.apply(batch)
        # An aggregate may still reject an accepted event (an order id created again);
        # its id is not seen then, like any rejected message's.
        late_rejects = batch.rejects[early_rejects:]
        if late_rejects:
            _unsee(batch, {reject[2] for reject in late_rejects})
        applied = accepted_count - len(late_rejects)
        last_event_time = None if batch.latest_micros is None else from_micros(batch.latest_micros)
        row = pipeline.record(
            batch,
            last_sequence=messages[-1].sequence,
            applied=applied,
            duplicates=duplicates,
            last_event_time=last_event_time,
        )
        batch.finish()
        result = BatchResult(
            first_sequence=messages[0].sequence,
            last_sequence=messages[-1].sequence,
            applied=applied,
            rejected=len(batch.rejects),
            duplicates=duplicates,
            aggregates=batch.aggregates,
            changes=batch.changes.normalized(),
            last_event_time=last_event_time,
        )
        return result, batch, row

    def _resolve_keys(self, batch: Batch, ids: dict[str, int]) -> int:
        """Look up the batch's keys and valid events' ids in the in-memory ``SeenIndex``;
        drop events applied before and keep the new ids (and their hashes) on the batch.

        Returns how many events turned out to be duplicates.
        """
        keys: list[str] = []
        for module in AGGREGATES:
            keys.extend(module.probe(batch))
        batch.found = self._seen.find_keys(keys)
        event_ids = list(ids)
        digests = md5_halves(event_ids)
        hit = np.flatnonzero(self._seen.events.find(digests[:, 1].copy()))
        recent = self._seen.recent.find(digests[hit])
        candidates = [event_ids[i] for i in hit]
        seen = {c for c, known in zip(candidates, recent, strict=True) if known}
        if len(seen) < len(candidates):  # older than the recent ids, or a hash collision
            seen |= confirm_seen(batch.cur, [c for c in candidates if c not in seen])
        if self.archive is not None and len(seen) < len(candidates):
            # Applied before, then archived: its raw row left the file (materializer/archive.py).
            rest = [c for c in candidates if c not in seen]
            seen |= self.archive.confirm_ids(batch.cur, rest)
        if not seen:
            batch.event_ids = event_ids
            batch.event_digests = digests
            return 0
        # Rare: re-delivered events. Remove them everywhere before anything is applied.
        for event_id in seen:
            del ids[event_id]
        keep = np.array([event_id not in seen for event_id in event_ids], bool)
        batch.event_ids = list(ids)
        batch.event_digests = digests[keep]
        removed = 0
        for event_type, group in batch.events.items():
            kept = [e for e in group if e.event_id not in seen]
            removed += len(group) - len(kept)
            batch.events[event_type] = kept
        return removed

    def stats(self) -> dict[str, Any]:
        """Pipeline state: last_sequence, counters, last event time, last batch time, as
        last committed (``pipeline_state``)."""
        return self._pipeline.counters()

    def pipeline_state(self) -> pipeline.State:
        """The pipeline state as last committed, kept in memory: what the file's
        ``pipeline_state`` view and gap totals hold, without reading them."""
        return self._pipeline

    def read(self, reader: Callable[[duckdb.DuckDBPyConnection], _T]) -> _T:
        """Run ``reader`` on a cursor of its own and close it: every read goes through here.

        A result left open on a long-lived cursor (a ``fetchone()`` on a streaming
        result) keeps its read transaction open: DuckDB then keeps the old version of
        every later commit, spills them to the ``.tmp`` folder and cannot checkpoint, so
        batches slow down by the minute. Closing the cursor ends the transaction.
        ``reader`` must return materialized values (``fetchall``, not a live result).
        Opening a cursor is cheap next to the query it runs (docs/OPERATIONS.md, "Reads
        never hold a transaction").
        """
        with self._reads_changed:
            while self._releasing:
                self._reads_changed.wait()
            self._reads += 1
        try:
            with db.cursor(self.conn) as cursor:
                return reader(cursor)
        finally:
            with self._reads_changed:
                self._reads -= 1

    def query(
        self, name: str, params: Mapping[str, Any], *, context: QueryContext | None = None
    ) -> QueryResult[Any]:
        """Answer a named query on a cursor of its own; raises ``BadQuery``."""
        if context is None:
            context = QueryContext(stream_last_sequence=self.stream_last_sequence)
        # The state as committed when the query starts (a later batch may commit while
        # it runs: its reads of the file may be that much newer).
        context = dataclasses.replace(context, pipeline=self._pipeline)
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

    def release_memory(self) -> bool:
        """Hand back the memory a catch-up or a burst left behind (on the writer thread,
        once ingest is idle; docs/OPERATIONS.md, "Memory"): checkpoint, drop the blocks
        of the file DuckDB caches by lowering its memory limit to ``RELEASE_LIMIT`` for
        the moment, then let its allocator and glibc's return their free pages.

        A lower limit could make a running read fail for memory, so new reads are held
        back while it is lowered (two SET statements). While a read is running this does
        nothing and returns False, for the caller to try again later.
        """
        # First, so that no row waits in memory: a lower limit would spill it to .tmp.
        if not self.checkpoint():
            return False
        with self._reads_changed:
            if self._reads:
                return False
            self._releasing = True
        try:
            limit = self._memory_limit
            if limit is None:
                rows = self.conn.execute("SELECT current_setting('memory_limit')").fetchall()
                limit = str(rows[0][0])
            try:
                self.conn.execute(f"SET memory_limit = '{RELEASE_LIMIT}'")
            except duckdb.OutOfMemoryException:
                pass  # it dropped what it could; the rest is in use
            finally:
                quoted = limit.replace("'", "''")
                self.conn.execute(f"SET memory_limit = '{quoted}'")
        finally:
            with self._reads_changed:
                self._releasing = False
                self._reads_changed.notify_all()
        memory.release_free_pages()
        return True

    def close(self) -> None:
        """Close the database (DuckDB checkpoints it on close)."""
        self.conn.close()


def _unsee(batch: Batch, event_ids: set[str | None]) -> None:
    """Keep ``event_ids`` (events rejected while applying) out of ``seen_events``."""
    keep = [event_id not in event_ids for event_id in batch.event_ids]
    batch.event_ids = [e for e, kept in zip(batch.event_ids, keep, strict=True) if kept]
    batch.event_digests = batch.event_digests[np.asarray(keep, bool)]


def _merged(first: BatchResult, second: BatchResult) -> BatchResult:
    """One result for two batches committed one after the other."""
    times = [t for t in (first.last_event_time, second.last_event_time) if t is not None]
    return BatchResult(
        first_sequence=first.first_sequence,
        last_sequence=second.last_sequence,
        applied=first.applied + second.applied,
        rejected=first.rejected + second.rejected,
        duplicates=first.duplicates + second.duplicates,
        aggregates=first.aggregates | second.aggregates,
        changes=first.changes.merged(second.changes),
        last_event_time=max(times) if times else None,
        gaps=[*first.gaps, *second.gaps],
    )
