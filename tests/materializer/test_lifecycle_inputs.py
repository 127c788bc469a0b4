"""What the lifecycle code reads from outside, attacked: backup requests, manifests, and
the archive's round trip of any message, byte for byte."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from materializer import archive, backup
from materializer.backup_service import BackupRequest, bad_dest
from materializer.store import RawMessage, Store
from pulse_bi import __version__

_decode = msgspec.json.Decoder(BackupRequest).decode


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_backup_request_bytes_decode_or_fail_cleanly(payload: bytes) -> None:
    try:
        request = _decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return
    assert request.dest is None or isinstance(request.dest, str)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=5000))
def test_any_dest_is_judged_without_raising(dest: str) -> None:
    problem = bad_dest(dest)
    assert problem is None or isinstance(problem, str)
    if not dest.strip() or "\x00" in dest or len(dest.encode("utf-8", "surrogatepass")) > 4096:
        assert problem is not None


@pytest.fixture(scope="module")
def a_backup(tmp_path_factory: pytest.TempPathFactory) -> backup.Backup:
    root = tmp_path_factory.mktemp("backup")
    Store.open(root / "src.duckdb").close()
    return backup.snapshot_offline(root / "src.duckdb", root / "b", __version__)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=10,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.dictionaries(st.sampled_from(sorted(backup.Manifest.__struct_fields__)), _json))
def test_a_tampered_manifest_is_refused_with_a_backup_error(
    a_backup: backup.Backup, changes: dict[str, Any]
) -> None:
    path = a_backup.path / backup.MANIFEST_FILE
    original = path.read_bytes()
    document = json.loads(original)
    document.update(changes)
    try:
        path.write_text(json.dumps(document))
        try:
            verified = backup.verify(a_backup.path)
        except backup.BackupError:
            return
        # Accepted only when nothing that is checked changed.
        for name in ("sha256", "size_bytes", "last_sequence", "schema_version", "rows", "file"):
            assert getattr(verified.manifest, name) == getattr(a_backup.manifest, name)
    finally:
        path.write_bytes(original)


@pytest.fixture(scope="module")
def empty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[duckdb.DuckDBPyConnection]:
    """A migrated file with no rows: the typed rows a run of these messages holds."""
    store = Store.open(tmp_path_factory.mktemp("empty") / "pulse.duckdb")
    try:
        yield store.conn
    finally:
        store.close()


_times = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(st.text(max_size=40), st.binary(max_size=2000), _times), min_size=1, max_size=30
    )
)
def test_the_archive_gives_back_every_message_byte_for_byte(
    tmp_path_factory: pytest.TempPathFactory,
    empty: duckdb.DuckDBPyConnection,
    rows: list[tuple[str, bytes, datetime]],
) -> None:
    root = tmp_path_factory.mktemp("archive")
    messages = [
        RawMessage(100 + i, subject, data, when.replace(microsecond=when.microsecond))
        for i, (subject, data, when) in enumerate(rows)
    ]
    run, written = archive.write_run(root, messages, empty)
    assert (run.first, run.last) == (100, 100 + len(rows) - 1) and written > 0
    back = [m for chunk in archive.messages(root, after=0, chunk=7) for m in chunk]
    assert back == messages
    assert [m for chunk in archive.messages(root, after=run.last) for m in chunk] == []


#: The parts' columns as Arrow wrote them until stop 24 (``pyarrow.parquet.write_table``).
_ARROW_PART = {
    "sequence": "int64",
    "subject": "string",
    "received_at": "timestamp[us, tz=UTC]",
    "event_id": "string",
    "data": "binary",
    "site": "string",
}


def test_parts_written_by_the_earlier_arrow_writer_read_back_the_same(
    tmp_path: Path, empty: duckdb.DuckDBPyConnection
) -> None:
    """Archives already on disk hold parts Arrow wrote; DuckDB writes the same Parquet
    types now, and a run whose parts Arrow wrote reads back as the same messages."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    when = datetime(2026, 11, 30, 12, 0, 0, 123456, tzinfo=UTC)
    messages = [
        RawMessage(1, "pulse.events.orders.created", b"\x00{}", when, "north"),
        RawMessage(2, "pulse.events.orders.created", b"not json", when + timedelta(seconds=1)),
    ]
    run, _ = archive.write_run(tmp_path, messages, empty)
    parts = archive.run_files(tmp_path, run)
    assert parts
    for path in parts:
        written = pq.read_table(path)
        assert {f.name: str(f.type) for f in written.schema} == _ARROW_PART
        schema = pa.schema([(name, written.schema.field(name).type) for name in _ARROW_PART])
        pq.write_table(written.cast(schema), path, compression="zstd")  # as before stop 24
    assert [m for chunk in archive.messages(tmp_path) for m in chunk] == messages
    assert archive.has_site(empty, [str(p) for p in parts])


@pytest.mark.parametrize(
    "damage",
    [b"", b"PAR1", b"not parquet at all" * 100, b"PAR1" + b"\x00" * 64 + b"PAR1"],
    ids=["empty", "magic only", "garbage", "zeroed"],
)
def test_a_damaged_part_is_the_archives_error_naming_its_run(
    tmp_path: Path, empty: duckdb.DuckDBPyConnection, damage: bytes
) -> None:
    """A part that is not Parquet (a disk error, a bad copy): replay and the site check
    stop with the archive's error, the run named, instead of a reader's."""
    when = datetime(2026, 11, 30, tzinfo=UTC)
    messages = [RawMessage(7, "pulse.events.orders.created", b"{}", when, "north")]
    run, _ = archive.write_run(tmp_path, messages, empty)
    parts = archive.run_files(tmp_path, run)
    parts[0].write_bytes(damage)
    with pytest.raises(archive.ArchiveError, match=r"cannot be read|archive run 7-7"):
        [m for chunk in archive.messages(tmp_path) for m in chunk]
    with pytest.raises(archive.ArchiveError, match="cannot be read"):
        archive.has_site(empty, [str(p) for p in parts])


def test_a_run_needs_messages_and_unfinished_runs_are_never_read(
    tmp_path: Path, empty: duckdb.DuckDBPyConnection
) -> None:
    with pytest.raises(archive.ArchiveError):
        archive.write_run(tmp_path, [], empty)
    when = datetime(2026, 11, 30, tzinfo=UTC)
    message = RawMessage(1, "pulse.events.orders.created", b"{}", when)
    archive.write_run(tmp_path, [message], empty)
    (tmp_path / archive.RUNS / "1-1.done").unlink()
    assert [m for chunk in archive.messages(tmp_path) for m in chunk] == []
    assert archive.remove_unfinished(tmp_path)
    assert not list(tmp_path.glob("type=*/day=*/*.parquet"))
    assert not list(tmp_path.glob("rows/*/*.parquet"))
    later = RawMessage(2, "pulse.events.orders.created", b"{}", when + timedelta(days=1))
    archive.write_run(tmp_path, [later], empty)
    assert [m.sequence for chunk in archive.messages(tmp_path) for m in chunk] == [2]
