"""The Parquet archive of raw events, and the retention that takes them out of DuckDB.

Layout (docs/OPERATIONS.md, "Archive and retention")::

    ARCHIVE_PATH/type=<event type>/day=<YYYY-MM-DD>/part-<first>-<last>.parquet
    ARCHIVE_PATH/rows/<raw table>/part-<first>-<last>.parquet
    ARCHIVE_PATH/_runs/<first>-<last>.done

An archive *run* takes the stream messages ``first``..``last`` (every one the stream
still holds: valid, rejected or duplicate, byte for byte, with its stream sequence and
time), writes one zstd Parquet file per event type and day of stream time, the typed
rows those messages left in each raw table and in ``rejected_events`` (format 2: what a
set-based rebuild loads, ``materializer/rebuild.py``), and then a ``.done`` marker
naming the format. Only then are the raw rows up to ``last`` deleted from DuckDB, in
one transaction with the new horizon (``archive_state``). A crash before the marker
leaves files no reader looks at (removed by the next run); a crash after it leaves a
complete run the next run retires without writing it again.

The aggregates never need a raw row again, with two exceptions read back from the
archive: a cancellation of an order older than the horizon (its hour, channel and
lines) and the check that a re-delivered event id really was applied before.
"""

from __future__ import annotations

import json
import re
import shutil
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from materializer import events
from materializer.aggregates import staged
from materializer.aggregates.columns import Frame, amounts, blobs, ints, scan, strings, times
from materializer.aggregates.columns import values as frame_values
from materializer.files import duckdb_config, finish, fsync, sql_literal
from materializer.store import RawMessage
from pulse_bi.contract import registry

#: Raw tables and the column holding the stream sequence of the event a row came from:
#: every aggregate's ``raw_tables`` (pulse_bi/contract/registry.py), and the lines of
#: the orders in ``order_events``, which hold no event id of their own.
RAW_TABLES: dict[str, str] = {table: "sequence" for table in registry.RAW_TABLES} | {
    "order_lines": "order_sequence"
}
#: Partition of messages that are not valid events (kept byte for byte like the others).
REJECTED = "rejected"
RUNS = "_runs"
#: Typed rows of a run, one folder per table: the raw tables and ``rejected_events``.
ROWS = "rows"
ROW_TABLES: dict[str, str] = RAW_TABLES | {"rejected_events": "sequence"}
#: Archive layout written by this code (docs/OPERATIONS.md, "Archive format"): 1 had
#: messages only; 2 adds the typed rows of every run.
FORMAT = 2
#: Messages read back per chunk (a replay applies each in one transaction).
CHUNK = 20_000
_RUN = re.compile(r"^(\d+)-(\d+)\.done$")
_PART = re.compile(r"^part-(\d+)-(\d+)\.parquet$")


class ArchiveError(Exception):
    """The archive cannot take (or give back) what it should; the message says why."""


@dataclass(frozen=True, slots=True, order=True)
class Run:
    """One finished archive run: stream sequences ``first``..``last``."""

    first: int
    last: int


def runs(root: Path) -> list[Run]:
    """Finished runs, oldest first."""
    marks = root / RUNS
    if not marks.is_dir():
        return []
    found = []
    for entry in marks.iterdir():
        match = _RUN.match(entry.name)
        if match:
            found.append(Run(int(match[1]), int(match[2])))
    return sorted(found)


def _part(run: Run) -> str:
    return f"part-{run.first:020d}-{run.last:020d}.parquet"


def run_files(root: Path, run: Run) -> list[Path]:
    """The Parquet files of ``run``'s messages."""
    return sorted(root.glob(f"type=*/day=*/{_part(run)}"))


def run_format(root: Path, run: Run) -> int:
    """The archive format ``run`` was written in (its marker says; a bare count is 1)."""
    text = (root / RUNS / f"{run.first}-{run.last}.done").read_text()
    try:
        return int(json.loads(text).get("format", 1)) if text.lstrip().startswith("{") else 1
    except (ValueError, AttributeError):
        return 1


def row_files(root: Path, table: str, runs: Sequence[Run]) -> list[str]:
    """The typed-row files of ``table`` for ``runs`` (format 2)."""
    return [str(root / ROWS / table / _part(run)) for run in runs]


def _label(message: RawMessage) -> tuple[str, str | None]:
    decoded = events.decode(message.subject, message.data)
    if isinstance(decoded, events.Event):
        return decoded.type, decoded.id
    return REJECTED, decoded.id


def write_run(
    root: Path, messages: Sequence[RawMessage], cur: duckdb.DuckDBPyConnection
) -> tuple[Run, int]:
    """Write ``messages`` (consecutive stream messages, oldest first) as one run, with
    the typed rows they left in the file open on ``cur`` (not retired yet); return the
    run and the bytes written."""
    if not messages:
        raise ArchiveError("an archive run needs at least one message")
    run = Run(messages[0].sequence, messages[-1].sequence)
    remove_unfinished(root)
    groups: dict[tuple[str, str], list[tuple[RawMessage, str | None]]] = defaultdict(list)
    for message in messages:
        label, event_id = _label(message)
        day = message.received_at.astimezone(UTC).date().isoformat()
        groups[(label, day)].append((message, event_id))
    written = 0
    name = f"part-{run.first:020d}-{run.last:020d}.parquet"
    for (label, day), rows in sorted(groups.items()):
        folder = root / f"type={label}" / f"day={day}"
        folder.mkdir(parents=True, exist_ok=True)
        columns: Frame = {
            "sequence": ints(m.sequence for m, _ in rows),
            "subject": strings(m.subject for m, _ in rows),
            "received_at": times(m.received_at for m, _ in rows),
            "event_id": strings(event_id for _, event_id in rows),
            "data": blobs(m.data for m, _ in rows),
            # The Pulse-Site header as received (null: none); runs written before sites
            # have no such column and read back as null (``union_by_name``).
            "site": strings(m.site for m, _ in rows),
        }
        partial = folder / f".{name}.partial"
        frame = frame_values(columns)  # noqa: F841 - read by DuckDB below
        cur.execute(
            f"COPY {scan(columns, 'frame')} TO '{sql_literal(partial)}'"
            " (FORMAT parquet, COMPRESSION zstd)"
        )
        written += finish(partial, folder / name)
    written += _write_rows(root, run, cur)
    marks = root / RUNS
    marks.mkdir(parents=True, exist_ok=True)
    mark = marks / f"{run.first}-{run.last}.done"
    mark.write_text(json.dumps({"format": FORMAT, "messages": len(messages)}) + "\n")
    fsync(mark)
    fsync(marks)
    return run, written


def has_site(cur: duckdb.DuckDBPyConnection, files: list[str]) -> bool:
    """Whether any of these archive files has the ``site`` column (files written before
    sites have none)."""
    if not files:
        return False
    try:
        (found,) = cur.execute(
            "SELECT count(*) FROM parquet_schema(?) WHERE name = 'site'", [files]
        ).fetchall()[0]
    except duckdb.Error as exc:
        raise ArchiveError(f"archive files cannot be read: {exc}") from exc
    return bool(found)


def _site(cur: duckdb.DuckDBPyConnection, files: list[str]) -> str:
    """The ``site`` column of these files: null in files written before sites."""
    if has_site(cur, files):
        return "site"  # files without it read as null (``union_by_name``)
    return "NULL::VARCHAR AS site"


def _write_rows(root: Path, run: Run, cur: duckdb.DuckDBPyConnection) -> int:
    """One zstd Parquet file per table of ``ROW_TABLES``: its rows of ``run``'s events,
    in sequence order (a file with no rows keeps the table's columns)."""
    written = 0
    for table, column in ROW_TABLES.items():
        folder = root / ROWS / table
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / f".{_part(run)}.partial"
        cur.execute(
            f"COPY (SELECT * FROM {table} WHERE {column} BETWEEN {int(run.first)}"
            f" AND {int(run.last)} ORDER BY ALL) TO '{sql_literal(partial)}'"
            " (FORMAT parquet, COMPRESSION zstd)"
        )
        written += finish(partial, folder / _part(run))
    return written


def remove_unfinished(root: Path) -> list[Path]:
    """Delete Parquet files of runs without a ``.done`` marker (a crash while writing)."""
    if not root.is_dir():
        return []
    done = {(r.first, r.last) for r in runs(root)}
    removed = []
    for path in [*root.glob("type=*/day=*/*"), *root.glob(f"{ROWS}/*/*")]:
        match = _PART.match(path.name)
        if match is None or (int(match[1]), int(match[2])) not in done:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def messages(root: Path, after: int = 0, chunk: int = CHUNK) -> Iterator[list[RawMessage]]:
    """Archived messages with sequences above ``after``, oldest first, in chunks."""
    conn = duckdb.connect(":memory:", config=duckdb_config())
    conn.execute("SET TimeZone = 'UTC'")  # received_at read back as aware UTC
    try:
        for run in runs(root):
            if run.last <= after:
                continue
            files = [str(p) for p in run_files(root, run)]
            if not files:
                raise ArchiveError(f"archive run {run.first}-{run.last} has no files in {root}")
            try:
                result = conn.execute(
                    f"SELECT sequence, subject, data, received_at, {_site(conn, files)}"
                    " FROM read_parquet($files, hive_partitioning = false, union_by_name = true)"
                    " WHERE sequence > $after ORDER BY sequence",
                    {"files": files, "after": after},
                )
            except duckdb.Error as exc:
                raise ArchiveError(f"archive run {run.first}-{run.last}: {exc}") from exc
            while rows := _fetch(result, chunk, run):
                yield [
                    RawMessage(sequence, subject, data, received, site)
                    for sequence, subject, data, received, site in rows
                ]
    finally:
        conn.close()


def _fetch(result: duckdb.DuckDBPyConnection, chunk: int, run: Run) -> list[Any]:
    """The next ``chunk`` rows of a run's messages; a file DuckDB cannot read is the
    archive's error, naming the run."""
    try:
        return result.fetchmany(chunk)
    except duckdb.Error as exc:
        raise ArchiveError(f"archive run {run.first}-{run.last}: {exc}") from exc


def horizon(cur: duckdb.DuckDBPyConnection) -> int:
    """Raw events up to this sequence are archived and gone from the file."""
    row = cur.execute("SELECT horizon FROM archive_state WHERE id = 1").fetchone()
    return int(row[0]) if row else 0


def retire(conn: duckdb.DuckDBPyConnection, upto: int) -> int:
    """Delete raw rows up to sequence ``upto`` and move the horizon there, in one
    transaction (on the writer thread, between batches). Returns rows deleted.

    The staged raw rows are folded into their bases first (``staged.fold``): a raw
    table is a view of both, and rows are deleted from its base."""
    deleted = 0
    conn.execute("BEGIN")
    try:
        staged.fold(conn)
        for table, column in RAW_TABLES.items():
            row = conn.execute(
                f"DELETE FROM {staged.base(table)} WHERE {column} <= ?", [upto]
            ).fetchone()
            deleted += int(row[0]) if row else 0
        conn.execute(
            "UPDATE archive_state SET horizon = greatest(horizon, ?), archived_at = ? WHERE id = 1",
            [upto, datetime.now(UTC)],
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return deleted


def raw_rows_between(cur: duckdb.DuckDBPyConnection, first: int, last: int) -> int:
    """Raw rows whose events have sequences ``first``..``last``."""
    total = 0
    for table, column in RAW_TABLES.items():
        row = cur.execute(
            f"SELECT count(*) FROM {table} WHERE {column} BETWEEN ? AND ?", [first, last]
        ).fetchone()
        total += int(row[0]) if row else 0
    return total


def size_bytes(root: Path) -> int:
    """Bytes the archive takes on disk."""
    if not root.is_dir():
        return 0
    files = [*root.glob("type=*/day=*/*.parquet"), *root.glob(f"{ROWS}/*/*.parquet")]
    return sum(p.stat().st_size for p in files)


def copy_tree(root: Path, target: Path) -> None:
    """Copy the archive (tests and tools)."""
    shutil.copytree(root, target, dirs_exist_ok=True)


class ArchiveReader:
    """What the aggregates read back from the archive for events older than the horizon."""

    def __init__(self, root: Path, horizon: int) -> None:
        self.root = root
        self.horizon = horizon

    def _files(self, label: str) -> list[str]:
        done = {(r.first, r.last) for r in runs(self.root)}
        found = []
        for path in self.root.glob(f"type={label}/day=*/*.parquet"):
            match = _PART.match(path.name)
            if match and (int(match[1]), int(match[2])) in done:
                found.append(str(path))
        return sorted(found)

    def confirm_ids(self, cur: duckdb.DuckDBPyConnection, candidates: list[str]) -> set[str]:
        """The candidate event ids that were applied before and archived since.

        A type's partition holds its rejected messages too; the ``rejected_events`` rows
        of format-2 runs leave them out, so that a corrected re-send of a rejected event
        still counts (docs/EVENTS.md, "Bad events"). Format-1 runs have no such rows.
        """
        if not candidates or not self.horizon:
            return set()
        rejected = [
            path
            for path in row_files(
                self.root,
                "rejected_events",
                [r for r in runs(self.root) if run_format(self.root, r) >= 2],
            )
            if Path(path).is_file()
        ]
        skip = (
            " AND sequence NOT IN (SELECT sequence FROM read_parquet(?, hive_partitioning = false))"
            if rejected
            else ""
        )
        found: set[str] = set()
        for label in events.EVENT_TYPES:
            files = self._files(label)
            if not files:
                continue
            rows = cur.execute(
                "SELECT DISTINCT event_id FROM read_parquet(?, hive_partitioning = false)"
                " WHERE sequence <= ? AND event_id IN (SELECT unnest(?::VARCHAR[]))" + skip,
                [files, self.horizon, candidates, *([rejected] if rejected else [])],
            ).fetchall()
            found.update(event_id for (event_id,) in rows)
        return found

    def orders(self, cur: duckdb.DuckDBPyConnection, sequences: list[int]) -> tuple[Frame, Frame]:
        """``order_events`` and ``order_lines`` rows of archived orders, by sequence."""
        files = self._files("order.created")
        rows: list[Any] = []
        if files and sequences:
            rows = cur.execute(
                f"SELECT sequence, subject, data, {_site(cur, files)} FROM read_parquet(?,"
                " hive_partitioning = false, union_by_name = true)"
                " WHERE sequence IN (SELECT unnest(?::BIGINT[])) ORDER BY sequence",
                [files, sequences],
            ).fetchall()
        orders: dict[str, list[Any]] = defaultdict(list)
        lines: dict[str, list[Any]] = defaultdict(list)
        for sequence, subject, data, site in rows:
            decoded = events.decode(subject, bytes(data))
            if not isinstance(decoded, events.Event):
                continue
            order = decoded.data
            hour = decoded.time.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
            orders["sequence"].append(int(sequence))
            orders["hour"].append(hour)
            orders["channel"].append(order.channel)
            orders["total_amount"].append(order.total_amount)
            orders["units"].append(sum(line.quantity for line in order.lines))
            orders["site"].append(site or "")
            for line in order.lines:
                lines["order_sequence"].append(int(sequence))
                lines["hour"].append(hour)
                lines["sku"].append(line.sku)
                lines["quantity"].append(line.quantity)
                lines["unit_price"].append(line.unit_price)
                lines["site"].append(site or "")
        return (
            {
                "sequence": ints(orders["sequence"]),
                "hour": times(orders["hour"]),
                "channel": strings(orders["channel"]),
                "total_amount": amounts(orders["total_amount"]),
                "units": ints(orders["units"]),
                "site": strings(orders["site"]),
            },
            {
                "order_sequence": ints(lines["order_sequence"]),
                "hour": times(lines["hour"]),
                "sku": strings(lines["sku"]),
                "quantity": ints(lines["quantity"]),
                "unit_price": amounts(lines["unit_price"]),
                "site": strings(lines["site"]),
            },
        )
