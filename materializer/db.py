"""The DuckDB file: opening a connection and bringing its schema up to date.

Opening checks the file before DuckDB reads it and turns DuckDB's errors about the file
into one line that says what is wrong and what to do (``DatabaseFileError``): a SQLite
or other non-DuckDB file, a truncated or corrupt one, a lock held by another process
(named by its PID), a schema newer than the code (docs/OPERATIONS.md, "Start-up checks").
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import pkgutil
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from materializer import migrations as _migrations_package
from materializer.files import duckdb_config, sql_literal

log = logging.getLogger("pulse_bi.materializer.db")

#: First bytes of a SQLite 3 file; DuckDB would try to load its sqlite extension for it.
_SQLITE_MAGIC = b"SQLite format 3\x00"
#: DuckDB files carry "DUCK" at byte 8.
_DUCKDB_MAGIC = b"DUCK"
_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (?P<program>.*?) \(PID (?P<pid>\d+)\)")
#: ``DUCKDB_CHECKPOINT_THRESHOLD``'s default (materializer/settings.py), for every
#: read-write connection (``set_checkpoint_threshold``).
CHECKPOINT_THRESHOLD = "16MB"
#: In the materializer, DuckDB's own threshold is this many times the materializer's
#: (``set_backstop_threshold``).
BACKSTOP_FACTOR = 4
#: ``DUCKDB_MEMORY_LIMIT``'s default (docs/OPERATIONS.md, "Memory"), which the benches use too.
MEMORY_LIMIT = "64MB"
#: ``DUCKDB_ROW_GROUP_SIZE``'s default: rows per row group of the tables the file's
#: connections append to (DuckDB's default is 122,880). Each checkpoint rewrites the
#: partly filled last row group of every table that grew, so its cost is bounded by this
#: (docs/OPERATIONS.md, "Checkpoints").
ROW_GROUP_SIZE = 16_384
#: The name the file is attached under in every connection (``connect``, ``cursor``).
CATALOG = "pulse"
_CORRUPT_WORDS = ("could not read enough bytes", "corrupt", "checksum", "not a valid duckdb")


class DatabaseFileError(Exception):
    """The DuckDB file cannot be used as it is; the message says why and what to do."""


class SchemaTooNew(DatabaseFileError):
    """The file was written by a newer pulse-bi (a schema version this code does not know)."""


class DatabaseLocked(DatabaseFileError):
    """Another process has the file open (DuckDB allows one writer process)."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered schema change."""

    version: int
    name: str
    sql: str


@dataclass(slots=True)
class MigrationStatus:
    """Where a database stands: applied version, newest known version, what is pending."""

    current: int
    latest: int
    pending: list[str] = field(default_factory=list)

    @property
    def too_new(self) -> bool:
        """The file holds a migration newer than any this code ships."""
        return self.current > self.latest

    def too_new_message(self, path: str | Path) -> str:
        """The refusal for a file written by a newer pulse-bi, naming both versions."""
        return (
            f"{path} is at schema version {self.current}, newer than this pulse-bi knows "
            f"(latest {self.latest}): run the pulse-bi that wrote it, or move the file away "
            'to rebuild it from the stream (docs/OPERATIONS.md, "Rebuilding")'
        )


def available_migrations() -> list[Migration]:
    """All migrations shipped with the code, oldest first."""
    found = []
    for module_info in pkgutil.iter_modules(_migrations_package.__path__):
        name = module_info.name
        if not (name.startswith("m") and name[1:5].isdigit()):
            continue
        module = importlib.import_module(f"{_migrations_package.__name__}.{name}")
        found.append(Migration(int(name[1:5]), name[6:], module.SQL))
    found.sort(key=lambda m: m.version)
    return found


def check_file(path: str | Path) -> None:
    """Refuse a file that is not a DuckDB database before DuckDB reads it."""
    try:
        with open(path, "rb") as file:
            head = file.read(16)
    except FileNotFoundError:
        return  # DuckDB creates it
    except OSError as exc:
        raise DatabaseFileError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if not head:
        return  # an empty file: DuckDB initialises it
    if head.startswith(_SQLITE_MAGIC):
        raise DatabaseFileError(
            f"{path} is a SQLite database, not a DuckDB file: point DUCKDB_PATH at the "
            "materializer's DuckDB file (or a new path to build one)"
        )
    if len(head) < 12 or head[8:12] != _DUCKDB_MAGIC:
        raise DatabaseFileError(
            f"{path} is not a DuckDB database file (no DuckDB header): point DUCKDB_PATH "
            "at the materializer's DuckDB file, or move this one away to rebuild"
        )


def _holder(pid: str, program: str) -> str:
    """``1234 (python -m pulse_bi materializer)``: the PID and, when visible, its command."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        command = " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)
    except OSError:
        command = ""
    return f"{pid} ({command or program})"


def file_error(path: str | Path, exc: duckdb.Error) -> DatabaseFileError | None:
    """The one-line ``DatabaseFileError`` for DuckDB's error about the file, if it is one."""
    text = " ".join(str(exc).split())
    held = _LOCK_HOLDER.search(text)
    if held is not None:
        return DatabaseLocked(
            f"{path} is in use by process {_holder(held['pid'], held['program'])}: DuckDB "
            "allows one process per file; stop that process first"
        )
    lowered = text.lower()
    if any(words in lowered for words in _CORRUPT_WORDS):
        detail = text.removeprefix("IO Error: ")
        return DatabaseFileError(
            f"{path} is truncated or corrupt ({detail}): restore it from a backup or move it "
            'away to rebuild it from the stream (docs/OPERATIONS.md, "Rebuilding")'
        )
    return None


def connect(
    path: str | Path,
    *,
    memory_limit: str | None = None,
    threads: int | None = None,
    read_only: bool = False,
    row_group_size: int | None = None,
) -> duckdb.DuckDBPyConnection:
    """Open (or create) the DuckDB file with the session settings we rely on.

    The file is attached as ``CATALOG`` to an in-memory DuckDB and chosen with USE:
    the size of its row groups (``ROW_GROUP_SIZE`` unless ``row_group_size``) is an
    option of ATTACH and is not stored in the file. A cursor starts in the in-memory
    catalog: take cursors with ``cursor``. Spills go to ``<file>.tmp``, as when DuckDB
    opens the file itself.

    Raises ``DatabaseFileError`` for a file that is not a usable DuckDB database.
    """
    check_file(path)
    # Nothing is downloaded at run time: a file that needs an extension (a SQLite file
    # would load ``sqlite_scanner``) fails with a message instead of reaching the network.
    config = duckdb_config()
    config["temp_directory"] = f"{path}.tmp"
    if memory_limit is not None:
        config["memory_limit"] = memory_limit
    if threads is not None:
        config["threads"] = threads
    options = [f"ROW_GROUP_SIZE {row_group_size or ROW_GROUP_SIZE}"]
    if read_only:
        options.append("READ_ONLY")
    conn = duckdb.connect(":memory:", config=config)
    try:
        conn.execute(f"ATTACH '{sql_literal(Path(path))}' AS {CATALOG} ({', '.join(options)})")
        conn.execute(f"USE {CATALOG}")
    except duckdb.Error as exc:
        conn.close()
        error = file_error(path, exc)
        if error is None:
            raise
        raise error from exc
    # Hour buckets are UTC: date_trunc on TIMESTAMPTZ follows the time zone of the
    # session. GLOBAL, so that every cursor (``Store.read``) starts in UTC too: a cursor
    # does not inherit the SET of the connection it came from.
    conn.execute("SET GLOBAL TimeZone = 'UTC'")
    if not read_only:
        set_checkpoint_threshold(conn, CHECKPOINT_THRESHOLD)
    return conn


@contextlib.contextmanager
def cursor(conn: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """A cursor of ``conn`` (from ``connect``) on the file, closed on leaving: a new
    cursor starts in DuckDB's in-memory catalog, not in the one its connection USEs
    (the USE adds about 0.1 ms to a read; docs/BENCHMARKS.md, "Smaller row groups")."""
    with conn.cursor() as cur:
        cur.execute(f"USE {CATALOG}")
        yield cur


def wal_path(path: str | Path) -> Path:
    """The WAL DuckDB keeps beside the database file ``path``."""
    return Path(f"{path}.wal")


def set_checkpoint_threshold(conn: duckdb.DuckDBPyConnection, size: str) -> None:
    """Make DuckDB checkpoint on its own once the WAL reaches ``size`` (empty: DuckDB's
    default, 16MB).

    Rows appended since the last checkpoint are held in memory (``IN_MEMORY_TABLE`` in
    ``duckdb_memory()``) until a checkpoint writes them to the file, so the threshold
    bounds the RSS of a bulk catch-up, which the scheduled checkpoints
    (``CHECKPOINT_INTERVAL``) do not: 5M events take less than that interval
    (docs/OPERATIONS.md, "Memory"; docs/BENCHMARKS.md, "Where the materializer's RSS
    grows"). Each checkpoint also rewrites the partly filled last row group of every
    growing table, so a smaller threshold costs ingest rate.
    """
    if size:
        conn.execute(f"SET checkpoint_threshold = '{size}'")
    else:
        conn.execute("RESET checkpoint_threshold")


def set_backstop_threshold(conn: duckdb.DuckDBPyConnection, bytes_: int) -> None:
    """Leave checkpoints at ``bytes_`` of WAL to the materializer, and DuckDB's own
    automatic checkpoint only as a backstop at ``BACKSTOP_FACTOR`` times that.

    DuckDB checkpoints on its own inside the COMMIT of the batch whose WAL would cross
    the threshold, so that batch's change notice waits for the checkpoint, which is not
    counted in ``pulse_materializer_checkpoint_seconds``. The materializer runs a
    CHECKPOINT statement after the batch's notice instead (``materializer.consumer``,
    docs/OPERATIONS.md, "Checkpoints"); it costs as much (docs/BENCHMARKS.md,
    "Checkpoints after the notice"). DuckDB's own checkpoint still bounds the WAL and
    the rows held in memory should the materializer's be refused several times running.
    """
    conn.execute(f"SET checkpoint_threshold = '{bytes_ * BACKSTOP_FACTOR} bytes'")


def rollback(conn: duckdb.DuckDBPyConnection) -> None:
    """Roll back the open transaction; never hide the error that made us roll back.

    When a COMMIT fails (disk full while writing the WAL), DuckDB has already ended the
    transaction and ROLLBACK raises "no transaction is active": the caller re-raises the
    real cause, so the failed ROLLBACK is only logged.
    """
    try:
        conn.execute("ROLLBACK")
    except duckdb.Error as exc:
        log.debug("rollback after a failed batch: %s", exc)


def _ensure_bookkeeping(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name VARCHAR NOT NULL,"
        " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
    )


def status(conn: duckdb.DuckDBPyConnection) -> MigrationStatus:
    """Applied and pending migrations of an open database."""
    known = available_migrations()
    latest = known[-1].version if known else 0
    exists = conn.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_migrations'"
    ).fetchone()
    applied = _applied(conn) if exists is not None and exists[0] else set()
    current = max(applied, default=0)
    # Pending is every known migration not applied, not only those above the newest
    # applied one: migrations written in parallel apply in any order.
    pending = [f"{m.version:04d}_{m.name}" for m in known if m.version not in applied]
    return MigrationStatus(current, latest, pending)


def _applied(conn: duckdb.DuckDBPyConnection) -> set[int]:
    return {int(v) for (v,) in conn.execute("SELECT version FROM schema_migrations").fetchall()}


def apply_migrations(conn: duckdb.DuckDBPyConnection, path: str | Path = "") -> MigrationStatus:
    """Apply every pending migration, each in its own transaction.

    Raises ``SchemaTooNew`` for a file written by a newer pulse-bi: running older code
    on it could misread or corrupt what the newer schema means.
    """
    _ensure_bookkeeping(conn)
    before = status(conn)
    if before.too_new:
        raise SchemaTooNew(before.too_new_message(path or "the DuckDB file"))
    applied = _applied(conn)
    for migration in available_migrations():
        if migration.version in applied:
            continue
        conn.execute("BEGIN")
        try:
            conn.execute(migration.sql)
            conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (?, ?)",
                [migration.version, migration.name],
            )
            conn.execute("COMMIT")
        except BaseException:
            rollback(conn)
            raise
    return status(conn)


def migration_status(path: str | Path) -> MigrationStatus:
    """Status of the database file at ``path`` (a missing file is at version 0)."""
    if not Path(path).exists():
        known = available_migrations()
        latest = known[-1].version if known else 0
        return MigrationStatus(0, latest, [f"{m.version:04d}_{m.name}" for m in known])
    # Read-only: looking must not change the file (no WAL replay written, no checkpoint).
    conn = connect(path, read_only=True)
    try:
        return status(conn)
    except duckdb.Error as exc:
        error = file_error(path, exc)
        if error is None:
            raise
        raise error from exc
    finally:
        conn.close()


def upgrade(path: str | Path) -> MigrationStatus:
    """Create or upgrade the database file at ``path`` to the latest schema."""
    conn = connect(path)
    try:
        return apply_migrations(conn, path)
    finally:
        conn.close()
