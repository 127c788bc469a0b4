"""Backups of the DuckDB file: a consistent snapshot with a manifest, verified on restore.

A backup is a directory ``pulse-bi-<UTC time>-<last sequence>/`` holding ``pulse_bi.duckdb``
and ``manifest.json`` (docs/OPERATIONS.md, "Backup"). The snapshot is written by DuckDB
itself: the database is attached next to the live one and ``COPY FROM DATABASE`` copies
every table in one read transaction, so the copy holds exactly the batches committed when
it began (a batch commits its data and ``pipeline_state.last_sequence`` together). The
materializer's writer keeps committing meanwhile: ingest does not wait for the copy.

Nothing half-written looks valid: the copy is made in ``.partial-…`` next to its final
place, checksummed, fsynced, its manifest written last, and only then renamed to its
final name. ``verify`` refuses a directory whose file does not match its manifest.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import msgspec

from materializer import db
from materializer.files import duckdb_config, fsync, sql_literal

#: Name of the database file inside a backup directory.
DATABASE_FILE = "pulse_bi.duckdb"
MANIFEST_FILE = "manifest.json"
#: Version of the manifest layout; ``verify`` refuses others.
MANIFEST_FORMAT = 1
PARTIAL_PREFIX = ".partial-"
_NAME = re.compile(r"^pulse-bi-(\d{8}T\d{6}Z)-(\d+)$")


class BackupError(Exception):
    """A backup cannot be taken or used; the message says why and what to do."""


class Manifest(msgspec.Struct, kw_only=True):
    """What a backup holds: written last, checked by ``verify``."""

    format: int = MANIFEST_FORMAT
    created_at: str
    #: Last stream sequence applied in the snapshot: the materializer resumes after it.
    last_sequence: int
    schema_version: int
    stream: str | None = None
    stream_created: str | None = None
    events_applied: int
    events_rejected: int
    events_duplicate: int
    #: Rows of every table of the snapshot, by table name.
    rows: dict[str, int]
    #: Raw events up to this sequence were archived to Parquet and left the file.
    archive_horizon: int = 0
    file: str = DATABASE_FILE
    size_bytes: int
    sha256: str
    #: How long writing the snapshot took (ingest went on meanwhile), in seconds.
    seconds: float
    pulse_bi_version: str
    duckdb_version: str


_decode_manifest = msgspec.json.Decoder(Manifest).decode


@dataclass(frozen=True, slots=True)
class Backup:
    """A verified backup on disk."""

    path: Path
    manifest: Manifest

    @property
    def database(self) -> Path:
        """The snapshot's DuckDB file."""
        return self.path / self.manifest.file


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _copy_catalog(cur: duckdb.DuckDBPyConnection, source: str, target: Path) -> None:
    """``COPY FROM DATABASE source`` into a new DuckDB file at ``target``."""
    alias = f"backup_{uuid.uuid4().hex[:12]}"
    cur.execute(f"ATTACH '{sql_literal(target)}' AS {alias}")
    try:
        cur.execute(f'COPY FROM DATABASE "{source}" TO {alias}')
    finally:
        # DETACH checkpoints the copy: the file is complete, with no WAL beside it.
        cur.execute(f"DETACH {alias}")


def snapshot_online(cur: duckdb.DuckDBPyConnection, root: Path, version: str) -> Backup:
    """Back up the live store into a new directory in ``root``, on a cursor it lends for
    reads (``Store.read``); ingest on other cursors goes on meanwhile."""
    row = cur.execute("SELECT current_database()").fetchone()
    assert row is not None
    return _snapshot(cur, str(row[0]), root, version)


def snapshot_offline(path: Path, root: Path, version: str) -> Backup:
    """Back up the stopped DuckDB file at ``path`` (refused while a process holds it)."""
    if not path.exists():
        raise BackupError(f"{path} does not exist: nothing to back up")
    db.check_file(path)
    conn = duckdb.connect(":memory:", config=duckdb_config())
    try:
        try:
            conn.execute(f"ATTACH '{sql_literal(path)}' AS source (READ_ONLY)")
        except duckdb.Error as exc:
            error = db.file_error(path, exc)
            raise BackupError(str(error or exc)) from exc
        return _snapshot(conn, "source", root, version)
    finally:
        conn.close()


def _snapshot(cur: duckdb.DuckDBPyConnection, source: str, root: Path, version: str) -> Backup:
    started = time.perf_counter()
    root.mkdir(parents=True, exist_ok=True)
    remove_partials(root)
    partial = root / f"{PARTIAL_PREFIX}{uuid.uuid4().hex}"
    partial.mkdir()
    try:
        target = partial / DATABASE_FILE
        _copy_catalog(cur, source, target)
        fsync(target)
        manifest = _describe(target, time.perf_counter() - started, version)
        stamp = datetime.fromisoformat(manifest.created_at).strftime("%Y%m%dT%H%M%SZ")
        final = root / f"pulse-bi-{stamp}-{manifest.last_sequence}"
        if final.exists():
            raise BackupError(f"{final} exists already")
        # The manifest last: a directory without one is never taken for a backup.
        (partial / MANIFEST_FILE).write_bytes(msgspec.json.format(msgspec.json.encode(manifest)))
        fsync(partial / MANIFEST_FILE)
        partial.rename(final)
        fsync(root)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return Backup(final, manifest)


def remove_partials(root: Path) -> list[Path]:
    """Remove what backups interrupted by a crash left in ``root``; return it."""
    removed = []
    for leftover in root.glob(f"{PARTIAL_PREFIX}*"):
        shutil.rmtree(leftover, ignore_errors=True)
        removed.append(leftover)
    return removed


def _describe(path: Path, seconds: float, version: str) -> Manifest:
    """The manifest of the snapshot file at ``path`` (read back from the copy itself)."""
    conn = duckdb.connect(str(path), read_only=True, config=duckdb_config())
    try:
        figures = _figures(conn)
    finally:
        conn.close()
    return Manifest(
        created_at=datetime.now(UTC).replace(microsecond=0).isoformat(),
        size_bytes=path.stat().st_size,
        sha256=sha256_of(path),
        seconds=round(seconds, 3),
        pulse_bi_version=version,
        duckdb_version=duckdb.__version__,
        **figures,
    )


def _figures(conn: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    state = conn.execute(
        "SELECT last_sequence, events_applied, events_rejected, events_duplicate"
        " FROM pipeline_state WHERE id = 1"
    ).fetchone()
    if state is None:
        raise BackupError("the snapshot has no pipeline state")
    tables = [
        name
        for (name,) in conn.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()"
            " ORDER BY table_name"
        ).fetchall()
    ]
    rows = {}
    for table in tables:
        counted = conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()
        rows[table] = int(counted[0]) if counted else 0
    identity = None
    if "stream_identity" in tables:
        identity = conn.execute("SELECT stream, created FROM stream_identity").fetchone()
    horizon = 0
    if "archive_state" in tables:
        found = conn.execute("SELECT horizon FROM archive_state WHERE id = 1").fetchone()
        horizon = int(found[0]) if found else 0
    schema = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
    return {
        "last_sequence": int(state[0]),
        "events_applied": int(state[1]),
        "events_rejected": int(state[2]),
        "events_duplicate": int(state[3]),
        "rows": rows,
        "schema_version": int(schema[0]) if schema and schema[0] is not None else 0,
        "stream": str(identity[0]) if identity else None,
        "stream_created": _iso(identity[1]) if identity else None,
        "archive_horizon": horizon,
    }


def _iso(value: object) -> str:
    return value.astimezone(UTC).isoformat() if isinstance(value, datetime) else str(value)


def read_manifest(path: Path) -> Manifest:
    """The manifest of a finished backup, not verified (for reporting the newest one)."""
    try:
        return _decode_manifest((path / MANIFEST_FILE).read_bytes())
    except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise BackupError(f"{path}: no readable {MANIFEST_FILE}: {exc}") from None


def verify(path: Path) -> Backup:
    """Check a backup directory (manifest, size, checksum, schema version, readable, the
    figures it claims) and return it; ``BackupError`` says what is wrong."""
    if path.is_file() and path.name == MANIFEST_FILE:
        path = path.parent
    if not path.is_dir():
        raise BackupError(f"{path} is not a backup directory (no such directory)")
    if path.name.startswith(PARTIAL_PREFIX):
        raise BackupError(f"{path} is a backup that never finished (crash while writing it)")
    try:
        manifest = _decode_manifest((path / MANIFEST_FILE).read_bytes())
    except FileNotFoundError:
        raise BackupError(f"{path} has no {MANIFEST_FILE}: not a finished backup") from None
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise BackupError(f"{path / MANIFEST_FILE} is not a valid manifest: {exc}") from None
    if manifest.format != MANIFEST_FORMAT:
        raise BackupError(f"{path}: manifest format {manifest.format} is not {MANIFEST_FORMAT}")
    if "/" in manifest.file or manifest.file in ("", ".", ".."):
        raise BackupError(f"{path}: manifest names an unsafe file {manifest.file!r}")
    database = path / manifest.file
    if not database.is_file():
        raise BackupError(f"{path}: {manifest.file} is missing")
    if Path(f"{database}.wal").exists():
        raise BackupError(f"{path}: {manifest.file}.wal exists: the snapshot was changed")
    size = database.stat().st_size
    if size != manifest.size_bytes:
        raise BackupError(
            f"{path}: {manifest.file} is {size} bytes, the manifest says {manifest.size_bytes}"
        )
    if sha256_of(database) != manifest.sha256:
        raise BackupError(f"{path}: {manifest.file} does not match its checksum (damaged)")
    latest = db.available_migrations()[-1].version
    if manifest.schema_version > latest:
        raise BackupError(
            f"{path} is at schema version {manifest.schema_version}, newer than this "
            f"pulse-bi knows (latest {latest}): restore it with the pulse-bi that wrote it"
        )
    try:
        conn = duckdb.connect(str(database), read_only=True, config=duckdb_config())
        try:
            figures = _figures(conn)
        finally:
            conn.close()
    except duckdb.Error as exc:
        raise BackupError(f"{path}: {manifest.file} cannot be read: {exc}") from exc
    for name in ("last_sequence", "schema_version", "rows"):
        if figures[name] != getattr(manifest, name):
            raise BackupError(f"{path}: {name} in the file differs from the manifest")
    return Backup(path, manifest)


def copy_verified(backup: Backup, incoming: Path) -> None:
    """Copy the backup's database to ``incoming`` (next to where it is restored), fsync
    it and check its checksum again; ``swap_in`` then puts it in place."""
    shutil.copyfile(backup.database, incoming)
    fsync(incoming)
    if sha256_of(incoming) != backup.manifest.sha256:
        incoming.unlink()
        raise BackupError(f"copying {backup.database} to {incoming} changed it (disk fault?)")


def swap_in(incoming: Path, target: Path, label: str) -> Path | None:
    """Rename ``incoming`` to ``target``, moving the old file and its WAL aside."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = target.with_name(f"{target.name}.{label}-{stamp}")
    moved = None
    if target.exists():
        target.rename(aside)
        moved = aside
    wal = Path(f"{target}.wal")
    if wal.exists():
        wal.rename(f"{aside}.wal")
    incoming_wal = Path(f"{incoming}.wal")
    incoming.rename(target)
    if incoming_wal.exists():
        incoming_wal.rename(wal)
    with contextlib.suppress(OSError):
        fsync(target.parent)
    return moved


def list_backups(root: Path) -> list[tuple[datetime, Path]]:
    """Finished backups in ``root`` by creation time, oldest first (not verified)."""
    found = []
    if not root.is_dir():
        return []
    for entry in root.iterdir():
        match = _NAME.match(entry.name)
        if match and (entry / MANIFEST_FILE).is_file():
            when = datetime.strptime(match[1], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
            found.append((when, entry))
    found.sort()
    return found


def to_keep(backups: Iterable[tuple[datetime, Path]], daily: int, weekly: int) -> set[Path]:
    """The newest backup of each of the last ``daily`` days and ``weekly`` ISO weeks that
    have one (grandfather-father-son); the newest backup is always kept."""
    ordered = sorted(backups, reverse=True)
    keep: set[Path] = set()
    if ordered:
        keep.add(ordered[0][1])
    days: set[object] = set()
    weeks: set[object] = set()
    for when, path in ordered:
        day = when.date()
        if day not in days and len(days) < daily:
            days.add(day)
            keep.add(path)
        week = when.isocalendar()[:2]
        if week not in weeks and len(weeks) < weekly:
            weeks.add(week)
            keep.add(path)
    return keep


def prune(root: Path, daily: int, weekly: int) -> list[Path]:
    """Delete the backups in ``root`` that ``to_keep`` does not keep; return them."""
    backups = list_backups(root)
    keep = to_keep(backups, daily, weekly)
    removed = []
    for _, path in backups:
        if path not in keep:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def last_backup(root: Path) -> tuple[datetime, Path] | None:
    """The newest finished backup in ``root``."""
    backups = list_backups(root)
    return backups[-1] if backups else None


def age(when: datetime) -> timedelta:
    """How long ago ``when`` was."""
    return datetime.now(UTC) - when
