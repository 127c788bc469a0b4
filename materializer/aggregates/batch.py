"""What one batch carries through the aggregates while its transaction is open."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from hashlib import md5
from operator import attrgetter
from typing import Any

import duckdb
import msgspec
import numpy as np
import numpy.typing as npt

from materializer.aggregates import deltas, staged
from materializer.aggregates.columns import (
    Column,
    Frame,
    Kind,
    instants,
    ints,
    repeated,
    rows,
    scan,
    strings,
    values,
)
from pulse_bi.contract import Changes


class Accepted(msgspec.Struct, gc=False):
    """A valid, not-yet-seen event of the batch with the message it came from."""

    sequence: int
    event_id: str
    time: datetime
    #: ``time`` as microseconds since the epoch (``columns.utc_micros``): what columns,
    #: maxima and hours are computed from.
    micros: int
    data: Any
    message: Any  # the RawMessage, for rejections found while applying


#: ``SET SESSION`` applies to the store's own connection only: the query cursors
#: (``db.cursor``) are connections of their own and keep the optimizer on.
_OPTIMIZER_ON = "SET SESSION enable_optimizer = true"
_OPTIMIZER_OFF = "SET SESSION enable_optimizer = false"
#: Queued plain statements that run with the optimizer off; fewer run as they are, as
#: switching it off and on again costs two statements.
PLAIN_RUN = 2


class Optimizer:
    """DuckDB's optimizer on one connection, switched off for runs of plain statements.

    An append of a frame or an update of one row by key has nothing to optimize, yet
    DuckDB's optimizer costs ~0.1-0.2 ms of each such statement (docs/BENCHMARKS.md, "The
    floor under a small batch"). It is switched only when the next statement needs the
    other state: a batch ends with a run of plain statements and the next one most often
    starts with one, so the optimizer stays off between batches (each ``SET`` is a
    statement of its own, ~0.3 ms on a slow machine). Whatever else runs on the
    connection asks for it on first (``on``; ``Store.writer``). A SET outlives a ROLLBACK:
    after a failed batch the store switches it on again, before anything else runs.
    """

    def __init__(self, conn: duckdb.DuckDBPyConnection) -> None:
        self.conn = conn
        # As the connection has it: a switch made for a connection that batches have
        # used (a bench timing its statements) must not take it to be on.
        (on,) = conn.execute("SELECT current_setting('enable_optimizer')").fetchall()[0]
        self._off = not on

    def on(self) -> duckdb.DuckDBPyConnection:
        """Switch the optimizer on (if it is off); the connection, for the next statement."""
        if self._off:
            self.conn.execute(_OPTIMIZER_ON)
            self._off = False
        return self.conn

    def off(self) -> duckdb.DuckDBPyConnection:
        """Switch the optimizer off (if it is on); the connection."""
        if not self._off:
            self.conn.execute(_OPTIMIZER_OFF)
            self._off = True
        return self.conn


class Batch:
    """Per-batch state shared by the aggregates: events by type, keys, rejects, changes.

    ``found`` maps seen-key strings (``'o:' + order_id`` …) that already exist in
    ``seen_keys`` to the stream sequence that created them; aggregates ask for keys in
    ``probe`` and the store resolves them all with one join before ``apply``.

    Plain statements (``insert``, ``plain``) wait in a queue and run together, with the
    optimizer off when ``PLAIN_RUN`` or more wait (``Optimizer``), as soon as anything
    reads ``cur`` and at ``finish``: a statement on ``cur`` sees every row queued before
    it, so an aggregate writes and reads in the order it wrote the code. A statement on
    ``earlier`` (rows of earlier batches only) leaves the queue waiting.
    """

    def __init__(self, cur: duckdb.DuckDBPyConnection, optimizer: Optimizer | None = None) -> None:
        self._cur = cur
        #: Switches DuckDB's optimizer on the batch's connection (None: left as it is).
        self._optimizer = optimizer
        #: Raw rows waiting to be written (``insert`` into a table of ``staged.TABLES``).
        self._raw: list[tuple[str, Frame]] = []
        #: Raw rows this batch put in ``staged.STAGED``, for the store's fold.
        self.staged_rows = 0
        #: The ``event_id`` arrays of the raw rows this batch wrote to the bases, and
        #: whether it staged any: which of its new event ids ``seen_events`` reads off
        #: staged rows and which go to its base (``staged.DERIVED``, ``_derived``).
        self._based_ids: list[npt.NDArray[Any]] = []
        self._staged_any = False
        #: Plain statements waiting to run (``insert``, ``plain``): SQL, parameters and
        #: the frame DuckDB reads as ``frame``.
        self._queued: list[tuple[str, list[Any] | None, dict[str, Any] | None]] = []
        self.events: dict[str, list[Accepted]] = {}
        self.rejects: list[tuple[int, str, str | None, str | None, str, bytes, datetime]] = []
        self.found: dict[str, int] = {}
        self.new_keys: list[str] = []
        #: Ids of the batch's events that are new (valid or rejected): seen from now on.
        self.event_ids: list[str] = []
        #: Their ``md5_halves``, in the same order: column 1 is the ``md5_number_lower``
        #: that ``seen_events`` stores.
        self.event_digests: npt.NDArray[np.uint64] = np.empty((0, 2), np.uint64)
        #: ``md5_halves`` of ``new_keys`` once ``pipeline.record`` stored them.
        self.key_hashes: npt.NDArray[np.uint64] | None = None
        self.new_key_sequences: list[int] = []
        #: Frames an aggregate builds for one step and reads again in another.
        self.frames: dict[str, Frame] = {}
        self.aggregates: set[str] = {"pipeline"}
        #: The latest ``Accepted.micros`` of ``events`` as the store grouped them (None:
        #: no event), found while decoding: aggregates may still reject some of them.
        self.latest_micros: int | None = None
        #: The named sites (``Pulse-Site``) of the batch's messages: none in a one-site
        #: deployment, where every event is the central site's.
        self.named_sites: set[str] = set()
        #: How many of ``rejects`` were decided before the aggregates ran (decoding, the
        #: site check): those after are events an aggregate refused.
        self.early_rejects = 0
        #: The latest time among the applied events without a site (the central site's),
        #: which ``pipeline.record`` stores (``sites.apply`` finds it).
        self.central_last_event_time: datetime | None = None
        #: Rows appended to aggregate deltas (``materializer.aggregates.deltas``).
        self.delta_rows = 0
        #: Delta rows of a small batch by aggregate (``append_delta``): one INSERT of
        #: them all at ``finish``.
        self._deltas: list[tuple[deltas.Folded, Frame]] = []
        #: The keys the batch touched, for its change notice (lists may repeat keys).
        self.changes = Changes()
        #: The Parquet archive (``materializer.archive.ArchiveReader``) when raw rows
        #: older than its horizon left the file.
        self.archive: Any = None

    @property
    def cur(self) -> duckdb.DuckDBPyConnection:
        """The batch's connection, for a statement that needs the optimizer (a join, a
        read, an UPDATE … FROM): runs the queued plain statements first."""
        self.flush()
        if self._optimizer is not None:
            self._optimizer.on()
        return self._cur

    @property
    def earlier(self) -> duckdb.DuckDBPyConnection:
        """The batch's connection, for a statement that needs the optimizer and touches
        only rows of earlier batches (found by ``found`` keys or their sequences): the
        queue keeps waiting, so a batch's plain statements run as one run at ``finish``
        and the optimizer is switched twice a batch, not before and after each such
        statement. A statement that reads or changes a row this batch queued (its own
        orders, invoices …) must use ``cur``: through here it would not see that row."""
        if self._optimizer is not None:
            self._optimizer.on()
        return self._cur

    def plain(self, sql: str, params: list[Any] | None = None) -> None:
        """Queue a statement with nothing to optimize (an update of one row by key)."""
        self._queued.append((sql, params, None))

    def flush(self) -> None:
        """Run the queued plain statements, in the order they came, after the raw rows
        (no queued statement reads a raw table)."""
        queued, self._queued = self._queued, []
        if self._raw:
            queued[:0] = self._raw_inserts()
        if not queued:
            return
        if self._optimizer is not None and len(queued) >= PLAIN_RUN:
            self._optimizer.off()
        cur = self._cur
        for sql, params, frame in queued:  # noqa: B007 - ``frame`` is read by DuckDB
            cur.execute(sql, params)

    def _raw_inserts(self) -> list[tuple[str, list[Any] | None, dict[str, Any] | None]]:
        """The INSERTs of the raw rows waiting: one into ``staged.STAGED`` for up to
        ``staged.MAX_ROWS`` rows (a small batch), else one into each table's base."""
        parts, self._raw = self._raw, []
        raw = [(table, frame) for table, frame in parts if table not in staged.DERIVED]
        count = sum(rows(frame) for _, frame in raw)
        inserts: list[tuple[str, list[Any] | None, dict[str, Any] | None]] = []
        if 0 < count <= staged.MAX_ROWS:
            self.staged_rows += count
            self._staged_any = True
            arrays = deltas.combined(((t, staged.slotted(t, f)) for t, f in raw), "raw_table")
            sql = f"INSERT INTO {staged.STAGED} BY NAME SELECT * FROM frame"
            inserts.append((sql, None, arrays))
        elif count:
            for table, frame in raw:
                sql = f"INSERT INTO {staged.base(table)} BY NAME SELECT * FROM frame"
                inserts.append((sql, None, values(frame)))
                if "event_id" in frame:
                    self._based_ids.append(frame["event_id"].values)
        for table, frame in parts:
            if table in staged.DERIVED:
                based = self._derived(frame)
                if based is not None and rows(based):
                    sql = f"INSERT INTO {staged.base(table)} BY NAME SELECT * FROM frame"
                    inserts.append((sql, None, values(based)))
        return inserts

    def _derived(self, frame: Frame) -> Frame | None:
        """Of ``seen_events``' rows (``h``, in the order of ``event_ids``), those its view
        cannot read off staged raw rows: the ids of the raw rows written to the bases.
        Written last in a batch (``pipeline.record``), after every raw row."""
        if not self._staged_any:
            return frame  # no raw row staged: every id goes to the base
        if not self._based_ids:
            return None  # every raw row staged: the view reads every id off them
        # Rare: some flushes of this batch staged, others wrote the bases.
        based = set().union(*(set(ids.tolist()) for ids in self._based_ids))
        keep = np.fromiter((e in based for e in self.event_ids), bool, len(self.event_ids))
        return {name: column._replace(values=column.values[keep]) for name, column in frame.items()}

    def append_delta(self, table: deltas.Folded, grouped: Frame) -> None:
        """Append an aggregate's delta rows (one per key) with the other aggregates' of
        this batch: one INSERT into ``deltas.DELTAS`` at ``finish``, a plain statement."""
        self._deltas.append((table, table.slotted(grouped)))
        self.delta_rows += rows(grouped)

    def finish(self) -> None:
        """Run what is queued, the deltas' one append among it: the batch's last step.

        The optimizer stays as that run left it (off, when two or more statements
        waited): the next batch most often starts with plain statements too, and what
        needs it switches it on (``Batch.cur``, ``Store.writer``, ``Optimizer``)."""
        if self._deltas:
            arrays = deltas.combined(((t.name, f) for t, f in self._deltas), "aggregate")
            self._deltas = []
            sql = f"INSERT INTO {deltas.DELTAS} BY NAME SELECT * FROM frame"
            count = len(arrays["aggregate"])
            if count > _ANALYZED_ROWS:
                # DuckDB types an object array (integers with NULLs: a column some
                # aggregates lack) from a sample of this many values: a larger value past
                # the sample would fail the batch ("Value out of range for type INT").
                self._queued.append((f"SET pandas_analyze_sample = {count}", None, None))
                self._queued.append((sql, None, arrays))
                self._queued.append(("RESET pandas_analyze_sample", None, None))
            else:
                self._queued.append((sql, None, arrays))
        self.flush()

    def of_type(self, event_type: str) -> list[Accepted]:
        """Accepted events of one type in stream order."""
        return self.events.get(event_type, [])

    def reject(self, event: Accepted, event_type: str, reason: str) -> None:
        """Store an event as rejected for a reason found while applying it."""
        self.rejects.append(
            (
                event.sequence,
                event.message.subject,
                event.event_id,
                event_type,
                reason,
                event.message.data,
                event.message.received_at,
            )
        )

    def add_key(self, key: str, sequence: int) -> None:
        """Record a key (event, order, invoice…) created by this batch."""
        self.new_keys.append(key)
        self.new_key_sequences.append(sequence)

    def accept_first(
        self, event_type: str, field: str, prefix: str, table: str, verb: str
    ) -> dict[str, Accepted]:
        """Events of ``event_type`` whose id ``field`` is new, by id; the others rejected.

        An id counts as taken when ``seen_keys`` has ``prefix + id`` (created in an earlier
        batch, looked up in ``table``) or an earlier event of this batch has it.
        """
        accepted: dict[str, Accepted] = {}
        conflicts: list[tuple[Accepted, int]] = []
        for event in self.of_type(event_type):
            key = getattr(event.data, field)
            earlier = self.found.get(prefix + key)
            if earlier is not None:
                conflicts.append((event, earlier))
            elif key in accepted:
                first = accepted[key].event_id
                self.reject(event, event_type, f"{field} '{key}' already {verb} by event '{first}'")
            else:
                accepted[key] = event
        if conflicts:  # rare: look up which events took those ids first (earlier batches)
            rows = self.earlier.execute(
                f"SELECT sequence, event_id FROM {table} WHERE sequence IN "
                "(SELECT unnest(?::BIGINT[]))",
                [[sequence for _, sequence in conflicts]],
            ).fetchall()
            by_sequence = dict(rows)
            for event, sequence in conflicts:
                key = getattr(event.data, field)
                first = by_sequence.get(sequence, "?")
                self.reject(event, event_type, f"{field} '{key}' already {verb} by event '{first}'")
        return accepted

    def accept_with_followers(
        self, aggregate: str, creates: tuple[str, str, str, str, str], follows: str
    ) -> tuple[dict[str, Accepted], list[Accepted]] | None:
        """The events that create ids (``accept_first(*creates)``) and those of type
        ``follows`` that refer to them (cancellations, payments); None when the batch has
        neither, else ``aggregate`` is marked as touched."""
        created = self.accept_first(*creates)
        followers = self.of_type(follows)
        if not created and not followers:
            return None
        self.aggregates.add(aggregate)
        return created, followers

    @staticmethod
    def site_column(events: list[Accepted]) -> Column:
        """Each event's site (its message's checked ``Pulse-Site``; '' without one)."""
        sites = [e.message.site for e in events]
        first = sites[0] if sites else None
        if sites.count(first) == len(sites):
            # One site per batch is the usual case: one value repeated.
            return repeated(first or "", len(sites))
        return strings([site or "" for site in sites])

    def insert(self, table: str, columns: Frame, select: str = "*", conflict: str = "") -> None:
        """Insert columns into ``table`` by column name, in one statement (``conflict``:
        its ``ON CONFLICT`` clause, if any), queued as a plain statement. A raw table's
        rows (``staged.TABLES``) wait for ``flush``, which writes them all at once."""
        if table in _RAW:
            if select != "*" or conflict:
                raise ValueError(f"{table}: raw rows are appended as they are")
            self._raw.append((table, columns))
            return
        # The whole frame as it is: the INSERT casts each array to its column's type
        # (``materializer.aggregates.columns``), a time's TIMESTAMP in the session's time
        # zone, UTC in every store connection (``materializer.db.connect``).
        rows = "frame" if select == "*" else scan(columns, "frame")
        sql = f"INSERT INTO {table} BY NAME SELECT {select} FROM {rows} {conflict}"
        self._queued.append((sql, None, values(columns)))


#: Values of an object array DuckDB reads to type it (its ``pandas_analyze_sample``).
_ANALYZED_ROWS = 1_000

#: The raw tables, whose rows ``insert`` keeps for ``flush``.
_RAW = frozenset(staged.TABLES)


def event_table(events: list[Accepted], fields: Mapping[str, Kind], **columns: Column) -> Frame:
    """The events as a frame: ``sequence``, ``event_id``, ``time``, then each data field
    named in ``fields`` as that kind of column, then ``columns`` built by the caller, then
    ``site``."""
    data = [e.data for e in events]
    table: dict[str, Column] = {
        "sequence": ints(e.sequence for e in events),
        "event_id": strings(e.event_id for e in events),
        "time": instants(e.micros for e in events),
    }
    for name, kind in fields.items():
        table[name] = kind(map(attrgetter(name), data))
    return {**table, **columns, "site": Batch.site_column(events)}


def iso(value: datetime) -> str:
    """ISO-8601 UTC with offset, e.g. ``2026-11-25T10:00:00+00:00``."""
    return value.isoformat()


def _short_md5() -> Callable[[bytes], Any]:
    """CPython's own md5 when it has one: for ids of a few dozen bytes, setting up
    OpenSSL's digest (what ``hashlib.md5`` calls) costs more than hashing, and this runs
    for every event id and key of a batch on the writer thread, under the GIL."""
    try:
        from _md5 import md5 as builtin  # type: ignore[import-not-found]
    except ImportError:  # a build without it: OpenSSL's, same digest
        return md5
    return builtin  # type: ignore[no-any-return]


_md5 = _short_md5()


def md5_halves(values: Iterable[str]) -> npt.NDArray[np.uint64]:
    """md5 of each utf-8 string as an (n, 2) uint64 array, as DuckDB computes it:
    column 0 holds the low and column 1 the high 64 bits of ``md5_number``; column 1
    is also ``md5_number_lower``.
    """
    digest = _md5
    digests = b"".join([digest(value).digest() for value in map(str.encode, values)])
    return np.frombuffer(digests, dtype="<u8").reshape(-1, 2)
