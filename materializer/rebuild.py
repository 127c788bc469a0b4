"""Set-based rebuild: a new file's state at the archive horizon loaded from the typed
rows of the Parquet archive, without applying a message (docs/OPERATIONS.md,
"Rebuilding").

Every archive run of format 2 holds, next to its messages, the rows they left in each
raw table and in ``rejected_events`` (``materializer/archive.py``). ``load`` reads those
files through DuckDB's ``read_parquet`` and lets each aggregate module's ``rebuild``
recompute its tables with set-based SQL (``materializer/aggregates/history.py``), then
records the stream's gaps, the pipeline state and the horizon, in one transaction.
The raw tables stay empty up to the horizon, as in the live file after retention; the
stream's tail is then applied through ``Store.apply_batch`` like live ingest.

An archive with a run of format 1 (written before the typed rows existed), or a run
missing a table's file, is rebuilt message by message instead (``materializer/replay.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from materializer import archive, continuity, db, replay
from materializer.aggregates import AGGREGATES
from materializer.aggregates.history import History
from materializer.files import sql_literal
from materializer.store import Store
from pulse_bi.contract import STREAM_NAME

log = logging.getLogger("pulse_bi.materializer.rebuild")


@dataclass(frozen=True, slots=True)
class Loaded:
    """What ``load`` put in the file."""

    messages: int
    last_sequence: int
    runs: int


def _files(paths: list[str]) -> str:
    return "[" + ", ".join(f"'{sql_literal(Path(p))}'" for p in paths) + "]"


def why_not(root: Path) -> str | None:
    """Why the archive at ``root`` cannot be loaded set-based (None: it can)."""
    runs = archive.runs(root)
    if not runs:
        return "the archive has no finished run"
    for run in runs:
        if archive.run_format(root, run) < 2:
            return f"run {run.first}-{run.last} is of archive format 1 (no typed rows)"
        for table in archive.ROW_TABLES:
            if not Path(archive.row_files(root, table, [run])[0]).is_file():
                return f"run {run.first}-{run.last} has no rows of {table}"
    return None


def _rows(cur: duckdb.DuckDBPyConnection, table: str, files: list[str]) -> str:
    """The relation of ``table``'s archived rows. Rows archived before sites have no
    ``site``: their events are the central site's, '' (docs/EVENTS.md, "Sites")."""
    source = f"read_parquet({_files(files)}, union_by_name = true)"
    if table not in archive.RAW_TABLES:
        return source
    if archive.has_site(cur, files):
        return f"(SELECT * REPLACE (coalesce(site, '') AS site) FROM {source})"
    return f"(SELECT *, '' AS site FROM {source})"


def history(cur: duckdb.DuckDBPyConnection, root: Path) -> History:
    """The archive's runs as a ``History`` over their Parquet files."""
    runs = archive.runs(root)
    rows = {
        table: _rows(cur, table, archive.row_files(root, table, runs))
        for table in archive.ROW_TABLES
    }
    messages = [str(p) for run in runs for p in archive.run_files(root, run)]
    return History(
        cur=cur,
        rows=rows,
        messages=f"(SELECT sequence FROM read_parquet({_files(messages)},"
        " hive_partitioning = false))",
        last_sequence=runs[-1].last,
        runs=len(runs),
    )


def load(conn: duckdb.DuckDBPyConnection, root: Path) -> Loaded | None:
    """Fill the empty file open on ``conn`` with the state after the archive's last
    run; None (nothing written) when the archive cannot be loaded set-based."""
    problem = why_not(root)
    if problem is not None:
        log.warning("rebuilding message by message: %s", problem)
        return None
    row = conn.execute("SELECT last_sequence FROM pipeline_state WHERE id = 1").fetchone()
    if row is None or int(row[0]) != 0:
        raise archive.ArchiveError("a set-based rebuild needs an empty file")
    conn.execute("BEGIN")
    try:
        past = history(conn, root)
        for module in AGGREGATES:
            module.rebuild(past)
        _record_gaps(past)
        conn.execute(
            "UPDATE archive_state SET horizon = ?, archived_at = ? WHERE id = 1",
            [past.last_sequence, datetime.now(UTC)],
        )
        counted = conn.execute(f"SELECT count(*) FROM {past.messages}").fetchone()
        conn.execute("COMMIT")
    except BaseException:
        db.rollback(conn)
        raise
    assert counted is not None
    return Loaded(int(counted[0]), past.last_sequence, past.runs)


def _record_gaps(past: History) -> None:
    """Sequences missing from the archived messages, as live ingest records them
    (``materializer/continuity.py``)."""
    past.cur.execute(
        "INSERT INTO stream_gaps SELECT previous + 1, sequence - 1, ? FROM ("
        " SELECT sequence, coalesce(lag(sequence) OVER (ORDER BY sequence), 0) AS previous"
        f" FROM {past.messages}) WHERE sequence > previous + 1",
        [datetime.now(UTC)],
    )


@dataclass(slots=True)
class Rebuilt:
    """What a rebuild did."""

    last_sequence: int
    #: Archived messages loaded set-based, or applied one by one (``set_based`` False).
    from_archive: int
    archive_seconds: float
    from_stream: int
    stream_seconds: float
    archive_horizon: int
    set_based: bool

    def report(self) -> dict[str, Any]:
        """The figures ``pulse-bi rebuild`` prints."""
        return {
            "last_sequence": self.last_sequence,
            "from_archive": self.from_archive,
            "archive_seconds": round(self.archive_seconds, 3),
            "set_based": self.set_based,
            "from_stream": self.from_stream,
            "stream_seconds": round(self.stream_seconds, 3),
            "archive_horizon": self.archive_horizon,
        }


async def rebuild(
    target: Path, root: Path, js: JetStreamContext | None, *, set_based: bool = True
) -> Rebuilt:
    """A new file at ``target`` (created empty) from the archive at ``root`` followed by
    the stream's tail (none without ``js``): set-based when the archive allows it and
    ``set_based``, else message by message; checkpointed and closed."""
    started = time.perf_counter()
    store = await asyncio.to_thread(Store.open, target)
    loaded = None
    try:
        if set_based:
            loaded = await asyncio.to_thread(load, store.writer(), root)
            if loaded is not None:
                # Opened again: the store reads its seen index, position and pipeline
                # state at open.
                store.close()
                store = await asyncio.to_thread(Store.open, target)
        archive_seconds = time.perf_counter() - started
        if js is not None:
            await keep_identity(store, js)
        store.archive = archive.ArchiveReader(root, store.read(archive.horizon))
        result = await replay.replay(store, js, root, replay.Until())
        horizon = await asyncio.to_thread(retire_archived, store, root)
        await asyncio.to_thread(store.checkpoint, force=True)
        last = store.last_sequence()
    finally:
        store.close()
    return Rebuilt(
        last_sequence=last,
        from_archive=(loaded.messages if loaded else 0) + result.archive.messages,
        archive_seconds=archive_seconds + result.archive.seconds,
        from_stream=result.stream.messages,
        stream_seconds=result.stream.seconds,
        archive_horizon=horizon,
        set_based=loaded is not None,
    )


def retire_archived(store: Store, root: Path) -> int:
    """Take the raw rows the archive holds out of a replayed file, as the live one had;
    return the horizon."""
    current = store.read(archive.horizon)
    done = [r.last for r in archive.runs(root) if r.last <= store.last_sequence()]
    upto = max(done, default=0)
    if upto > current:
        archive.retire(store.writer(), upto)
        if store.archive is not None:
            store.archive.horizon = upto
        return upto
    return int(current)


async def keep_identity(store: Store, js: JetStreamContext) -> None:
    """A file built from nothing belongs to the stream it replays (as at first ingest)."""
    with contextlib.suppress(NotFoundError):
        info = await js.stream_info(STREAM_NAME)
        continuity.save_identity(store.writer(), continuity.identity_of(info))
