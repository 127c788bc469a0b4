"""Staged raw rows (m0013, m0014): a small batch's raw rows go in one table, ``raw_staged``, and
every raw table is a view of its base and of its staged rows, folded between batches."""

from __future__ import annotations

import itertools
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.bench_apply import generate
from bench.bench_statements import TIMES, TimedCursor
from materializer import db
from materializer.aggregates import FOLDED, deltas, staged
from materializer.aggregates import batch as batch_module
from materializer.aggregates.batch import Batch, md5_halves
from materializer.aggregates.columns import dates, instants, ints, repeated, strings
from materializer.store import RawMessage, Store
from tests.materializer.eventkit import Stream
from tests.materializer.lifecycle_kit import assert_same, contents, file_before

#: The simulated mix (orders with lines, cancellations, invoices, payments, movements,
#: product and customer updates, ~1 % bad input, re-sent messages).
MESSAGES = list(generate(400, duplicates=0.02))
#: The first and last hours of the years a time may have (microseconds since 1970).
YEAR_1 = -62_135_596_800_000_000
YEAR_9999 = 253_402_297_200_000_000
#: The raw tables kept as base + staged rows (``staged.TABLES`` without the seen ids
#: and keys, which have tests of their own below).
RAW_TABLES = [t for t in staged.TABLES if t not in staged.SEEN]
#: Every table kept as base + staged rows and its base.
RAW = {*staged.TABLES, *(staged.base(t) for t in staged.TABLES)}


def _staged(store: Store, *, seen: bool = False) -> dict[str, int]:
    """Staged rows by table: of the raw tables, or (``seen``) of every table."""
    named = "" if seen else f" WHERE raw_table NOT IN {staged.SEEN}"
    return dict(
        store.read(
            lambda cur: cur.execute(
                f"SELECT raw_table, count(*) FROM {staged.STAGED}{named} GROUP BY ALL"
            ).fetchall()
        )
    )


def _raw(cur: duckdb.DuckDBPyConnection) -> dict[str, list[Any]]:
    """Every raw table's rows, read through its view (sorted)."""
    return {t: cur.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in RAW_TABLES}


def _base_rows(store: Store) -> int:
    union = " UNION ALL ".join(f"SELECT 1 FROM {staged.base(t)}" for t in RAW_TABLES)
    return int(
        store.read(lambda cur: cur.execute(f"SELECT count(*) FROM ({union})").fetchall())[0][0]
    )


def _apply(
    path: Path, batches: list[list[RawMessage]], fold_after: set[int], *, max_rows: int
) -> None:
    """Apply the batches with ``staged.MAX_ROWS`` at ``max_rows`` (0: every raw row
    straight to the bases), folding after the batches numbered in ``fold_after``."""
    store, most = Store.open(path), staged.MAX_ROWS
    staged.MAX_ROWS = max_rows
    try:
        for n, part in enumerate(batches):
            store.apply_batch(part)
            if n in fold_after:
                store.compact()
    finally:
        staged.MAX_ROWS = most
        store.close()


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    cuts=st.lists(st.integers(1, len(MESSAGES) - 1), max_size=30, unique=True),
    folds=st.sets(st.integers(0, 30), max_size=4),
)
def test_any_batches_and_folds_hold_what_one_large_batch_holds(
    tmp_path_factory: pytest.TempPathFactory, cuts: list[int], folds: set[int]
) -> None:
    """Batches of any sizes, staged or not, folded at any point, against the whole
    stream applied at once with the rows straight in the bases: every raw table (read
    through its view), every aggregate and table alike."""
    where = tmp_path_factory.mktemp("staged")
    bounds = [0, *sorted(cuts), len(MESSAGES)]
    batches = [MESSAGES[a:b] for a, b in itertools.pairwise(bounds)]
    # At 200 rows, the longer batches write the bases while shorter ones' rows wait
    # staged: a base then takes rows out of sequence order at the next fold.
    _apply(where / "batches.duckdb", batches, folds, max_rows=200)
    _apply(where / "whole.duckdb", [MESSAGES], set(), max_rows=0)
    assert_same(contents(where / "batches.duckdb"), contents(where / "whole.duckdb"))


def test_a_small_batch_stages_its_raw_rows_in_one_statement_and_a_fold_moves_them(
    tmp_path: Path,
) -> None:
    store = Store.open(tmp_path / "pulse.duckdb")
    try:
        TIMES.clear()
        real = store._optimizer.conn
        store._optimizer = batch_module.Optimizer(TimedCursor(real))  # type: ignore[arg-type]
        store.apply_batch(MESSAGES[:40])
        store._optimizer = batch_module.Optimizer(real)
        inserts = [s.split(" SELECT")[0] for s in TIMES if s.startswith("INSERT INTO")]
        # One INSERT of raw rows: none into a raw table's base.
        assert f"INSERT INTO {staged.STAGED} BY NAME" in inserts
        assert not [s for s in inserts if s.removeprefix("INSERT INTO ").split()[0] in RAW]
        waiting = _staged(store)
        assert set(waiting) >= {"order_events", "order_lines", "stock_events"}
        assert _base_rows(store) == 0
        views = store.read(lambda cur: cur.execute("SELECT count(*) FROM order_events").fetchall())
        assert views == [(waiting["order_events"],)]
        store.compact()
        assert _staged(store) == {}
        assert _base_rows(store) == sum(waiting.values())
    finally:
        store.close()


def test_a_batch_with_more_raw_rows_than_staged_max_writes_the_bases(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(staged, "MAX_ROWS", 20)
    store = Store.open(tmp_path / "pulse.duckdb")
    try:
        store.apply_batch(MESSAGES[:3])  # a few rows: staged
        assert 0 < sum(_staged(store).values()) <= 20
        store.apply_batch(MESSAGES[3:60])  # more than 20 rows: the bases
        assert _base_rows(store) > 20
        assert sum(_staged(store).values()) <= 20
    finally:
        store.close()


def _not_null_columns(conn: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    """(raw table, column) for every NOT NULL column of every base, from the catalog."""
    listed = ", ".join(f"'{staged.base(t)}'" for t in staged.TABLES)
    rows = conn.execute(
        "SELECT table_name, column_name FROM duckdb_columns() WHERE NOT is_nullable"
        f" AND table_name IN ({listed}) ORDER BY ALL"
    ).fetchall()
    return [(table.removesuffix("_base"), column) for table, column in rows]


def test_a_staged_row_without_a_column_its_table_requires_is_refused(tmp_path: Path) -> None:
    """Each raw table's NOT NULL columns hold in its staged rows too (NOT NULL slots and
    one CHECK per table): a NULL fails the batch that carries it, never the fold after it."""
    conn = db.connect(tmp_path / "pulse.duckdb")
    db.apply_migrations(conn, tmp_path / "pulse.duckdb")
    try:
        required = _not_null_columns(conn)
        assert len(required) > 40 and ("invoice_events", "order_id") not in required
        full = {
            table: conn.execute(f"SELECT * FROM {staged.base(table)} LIMIT 0").description
            for table in staged.TABLES
        }
        filler = {
            "BIGINT": "1",
            "VARCHAR": "'x'",
            "TIMESTAMP WITH TIME ZONE": "TIMESTAMPTZ '2026-01-01 00:00:00+00'",
            "DECIMAL(18,2)": "1.00",
        }
        types = dict(
            conn.execute(
                "SELECT column_name, data_type FROM duckdb_columns()"
                f" WHERE table_name = '{staged.STAGED}'"
            ).fetchall()
        )
        for table, missing in required:
            if table in staged.DERIVED:
                continue  # nothing is staged for it: its view reads the raw rows
            slots = staged.SLOTS[table]
            names = [slots[d[0]] for d in full[table] if d[0] != missing]
            values = ", ".join([f"'{table}'", *(filler[types[n]] for n in names)])
            insert = (
                f"INSERT INTO {staged.STAGED} ({', '.join(['raw_table', *names])})"
                f" VALUES ({values})"
            )
            with pytest.raises(duckdb.ConstraintException):
                conn.execute(insert)
            # The same row with the column: accepted (the constraint is that column's).
            conn.execute("BEGIN")
            conn.execute(
                f"INSERT INTO {staged.STAGED} (raw_table, {', '.join([*names, slots[missing]])})"
                f" VALUES ({values}, {filler[types[slots[missing]]]})"
            )
            conn.execute("ROLLBACK")
        with pytest.raises(duckdb.ConstraintException):
            conn.execute(
                f"INSERT INTO {staged.STAGED} (raw_table, sequence, site, text_1, text_2)"
                " VALUES ('orders', 1, '', 'x', 'x')"
            )
    finally:
        conn.close()


def test_staged_rows_read_back_exactly_up_to_the_most_a_batch_stages(tmp_path: Path) -> None:
    """The one INSERT fills an integer column that a part lacks with None, making an
    object array that DuckDB types from a sample of its values: at ``MAX_ROWS`` rows,
    with the part that has the column last and its largest value last, every value
    still reads back exact (a wrong type would fail the batch, or lose digits)."""
    conn = db.connect(tmp_path / "pulse.duckdb")
    db.apply_migrations(conn, tmp_path / "pulse.duckdb")
    try:
        customers = staged.MAX_ROWS - 3
        largest = 2**63 - 1
        conn.execute("BEGIN")
        batch = Batch(conn)
        batch.insert(
            "customer_events",
            {
                "sequence": ints(range(1, customers + 1)),
                "event_id": strings(f"c-{n}" for n in range(customers)),
                "time": instants(np.arange(customers) * 1_000_000),
                "customer_id": strings(f"C-{n}" for n in range(customers)),
                "name": strings("Ünïcødé ✓" for _ in range(customers)),
                "site": repeated("", customers),
            },
        )
        batch.insert(
            "order_lines",
            {
                "order_sequence": ints([largest - 1, largest]),
                "line_no": ints([1, 2]),
                "hour": instants([YEAR_1, YEAR_9999]),
                "order_id": strings(["O-1", "O-1"]),
                "sku": strings(["A", "B"]),
                "quantity": ints([1, largest]),
                "unit_price": strings(["0.01", "9999999999999999.99"]),
                "site": repeated("", 2),
            },
        )
        batch.insert(
            "invoice_events",
            {
                "sequence": ints([customers + 1]),
                "event_id": strings(["i-1"]),
                "time": instants([YEAR_9999]),
                "invoice_id": strings(["I-1"]),
                "customer_id": strings(["C-1"]),
                "order_id": strings([None]),
                "amount": strings(["-9999999999999999.99"]),
                "issued_on": dates([date(1, 1, 1)]),
                "due_date": dates([date(9999, 12, 31)]),
                "site": repeated("", 1),
            },
        )
        batch.finish()
        assert batch.staged_rows == staged.MAX_ROWS
        # A date is staged as its days since 1970 (``staged.slotted``).
        assert conn.execute(
            "SELECT issued_on, due_date, amount::VARCHAR, order_id FROM invoice_events"
        ).fetchall() == [(date(1, 1, 1), date(9999, 12, 31), "-9999999999999999.99", None)]
        lines = conn.execute(
            "SELECT order_sequence, line_no, quantity, unit_price::VARCHAR, year(hour)"
            " FROM order_lines ORDER BY line_no"
        ).fetchall()
        assert lines == [
            (largest - 1, 1, 1, "0.01", 1),
            (largest, 2, largest, "9999999999999999.99", 9999),
        ]
        assert conn.execute(
            "SELECT count(*), min(sequence), max(sequence), count(DISTINCT name)"
            " FROM customer_events"
        ).fetchall() == [(customers, 1, customers, 1)]
        before = _raw(conn)
        assert staged.fold(conn) == staged.MAX_ROWS
        assert _raw(conn) == before
        conn.execute("COMMIT")
    finally:
        conn.close()


def _stream_rows(path: Path) -> dict[str, tuple[list[str], list[Any]]]:
    """Each raw table's column names and rows after a few batches of the usual mix (on a
    file of the current version at ``path``), and a payment and a cancellation to come."""
    store = Store.open(path)
    try:
        for start in range(0, 120, 40):
            store.apply_batch(MESSAGES[start : start + 40])

        def read(cur: duckdb.DuckDBPyConnection) -> dict[str, tuple[list[str], list[Any]]]:
            out = {}
            for table in RAW_TABLES:
                cur.execute(f"SELECT * FROM {table} ORDER BY ALL")
                out[table] = ([d[0] for d in cur.description], cur.fetchall())
            return out

        return store.read(read)
    finally:
        store.close()


def _insert(conn: duckdb.DuckDBPyConnection, table: str, names: list[str], rows: list[Any]) -> None:
    if rows:
        marks = ", ".join("?" for _ in names)
        conn.executemany(f"INSERT INTO {table} ({', '.join(names)}) VALUES ({marks})", rows)


def _after_upgrade(path: Path, before: dict[str, list[Any]]) -> None:
    """The upgraded file holds the same raw rows, none staged, and takes new ones."""
    store = Store.open(path)
    try:
        assert store.read(_raw) == before
        assert _staged(store) == {}
        stream = Stream()
        store.apply_batch(
            [
                stream.order("O-1", lines=[("SKU-1", 2, "5.00")], total="10.00"),
                stream.invoice("I-1", "10.00"),
            ]
        )
        store.apply_batch([stream.payment("P-1", "I-1", "4.00"), stream.cancel("O-1")])
        assert _staged(store) == {
            "order_events": 1,
            "order_lines": 1,
            "invoice_events": 1,
            "payment_events": 1,
            "order_cancellations": 1,
        }
        grown = store.read(_raw)
        store.compact()
        assert store.read(_raw) == grown
        summary = store.query(
            "sales_summary", {"from": "2026-01-01T00:00:00Z", "to": "2027-01-01T00:00:00Z"}
        )
        assert summary.wire["cancelled_orders"] >= 1
    finally:
        store.close()


def test_upgrade_from_version_12_stages_without_losing_a_raw_row(tmp_path: Path) -> None:
    """Version 12 kept each raw table whole: m0013 and m0014 make it a base and a view."""
    rows = _stream_rows(tmp_path / "current.duckdb")
    assert all(rows[t][1] for t in RAW_TABLES)  # the mix has rows of every table
    conn = file_before(tmp_path / "pulse.duckdb", 13)
    try:
        for table, (names, values) in rows.items():
            _insert(conn, table, names, values)
        before = _raw(conn)
    finally:
        conn.close()
    assert before == {t: values for t, (_, values) in rows.items()}
    _after_upgrade(tmp_path / "pulse.duckdb", before)


def test_upgrade_from_version_13_folds_its_staged_rows_into_the_bases(tmp_path: Path) -> None:
    """Version 13 staged rows with every raw table's columns: m0014 folds them into the
    bases before it narrows ``raw_staged``, so none is lost or read twice."""
    rows = _stream_rows(tmp_path / "current.duckdb")
    conn = file_before(tmp_path / "pulse.duckdb", 14)
    try:
        for table, (names, values) in rows.items():
            # The even rows folded, the odd ones waiting staged, as version 13 wrote them.
            _insert(conn, staged.base(table), names, values[::2])
            labelled = [(table, *row) for row in values[1::2]]
            _insert(conn, staged.STAGED, ["raw_table", *names], labelled)
        waiting = conn.execute(f"SELECT count(*) FROM {staged.STAGED}").fetchall()[0][0]
        assert waiting == sum(len(values[1::2]) for _, values in rows.values()) > 0
        before = _raw(conn)
    finally:
        conn.close()
    assert before == {t: values for t, (_, values) in rows.items()}
    _after_upgrade(tmp_path / "pulse.duckdb", before)


def test_the_store_folds_the_staged_rows_once_they_reach_their_threshold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(staged, "FOLD_ROWS", 5)  # a movement or a customer update stages no key
    stream = Stream()
    store = Store.open(tmp_path / "pulse.duckdb")
    try:
        store.apply_batch([stream.move("SKU-1", "W1", 5), stream.move("SKU-2", "W1", 1)])
        store.apply_batch([stream.customer("C-1", "Ada"), stream.customer("C-2", "Bo")])
        assert _staged(store) == {"stock_events": 2, "customer_events": 2}
        assert not store.fold_due
        store.apply_batch([stream.move("SKU-1", "W1", 1)])  # 5 staged rows: a fold is due
        assert store.fold_due
        store.apply_batch([stream.move("SKU-1", "W1", 1)])  # folds first, then stages 1 row
        assert _staged(store) == {"stock_events": 1}
        assert _base_rows(store) == 5
    finally:
        store.close()
    store = Store.open(tmp_path / "pulse.duckdb")  # the count survives a restart
    try:
        store.apply_batch([stream.move("SKU-1", "W1", 1)])
        store.apply_batch([stream.move("SKU-3", "W1", 1) for _ in range(3)])
        assert store.fold_due and _staged(store) == {"stock_events": 5}
    finally:
        store.close()


def test_a_fold_when_due_folds_the_deltas_or_the_staged_rows_never_both_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each fold pauses ingest: two due at once are two pauses between batches, not one
    of both lengths."""
    monkeypatch.setattr(staged, "FOLD_ROWS", 2)
    monkeypatch.setattr(deltas, "COMPACT_ROWS", 2)
    stream = Stream()
    store = Store.open(tmp_path / "pulse.duckdb")
    try:
        store.apply_batch([stream.move("SKU-1", "W1", 5), stream.move("SKU-2", "W1", 1)])
        assert store.fold_due and _staged(store) == {"stock_events": 2}
        assert store.fold_when_due()  # the deltas first
        assert store.read(lambda cur: deltas.pending_rows(cur, FOLDED)) == 0
        assert _staged(store) == {"stock_events": 2}
        assert store.fold_when_due()  # then the staged rows
        assert _staged(store) == {} and _base_rows(store) == 2
        assert not store.fold_due and not store.fold_when_due()
    finally:
        store.close()


# -- the seen event ids and keys (m0015) ------------------------------------------------


def _seen_checks(store: Store, stream: Stream, order: RawMessage) -> None:
    """The store knows the order's event id and its order id, staged or folded: the
    same message again is a duplicate, the order id under a new event id a reject."""
    again = stream.raw(order.data, order.subject)
    result = store.apply_batch([again])
    assert (result.applied, result.duplicates, result.rejected) == (0, 1, 0)
    twice = stream.order("O-1", id=f"other-{stream.next_sequence}")
    result = store.apply_batch([twice])
    assert (result.applied, result.rejected) == (0, 1)
    # A rejected message is no applied event: sent again, it is rejected again.
    result = store.apply_batch([stream.raw(twice.data, twice.subject)])
    assert (result.applied, result.duplicates, result.rejected) == (0, 0, 1)


def test_a_small_batch_stages_its_seen_ids_and_keys_and_a_restart_reads_them(
    tmp_path: Path,
) -> None:
    path = tmp_path / "pulse.duckdb"
    stream = Stream()
    order = stream.order("O-1", id="e-1")
    store = Store.open(path)
    try:
        store.apply_batch([order, stream.invoice("I-1", "10.00", id="e-2")])
        # Two keys (the order's, the invoice's) staged with the raw rows; the two new
        # event ids are read off those rows, nothing is written for them.
        assert _staged(store, seen=True) == {
            "order_events": 1,
            "order_lines": 1,
            "invoice_events": 1,
            "seen_keys": 2,
        }
        ids = store.read(lambda cur: cur.execute("SELECT h FROM seen_events_staged").fetchall())
        assert sorted(h for (h,) in ids) == sorted(md5_halves(["e-1", "e-2"])[:, 1].tolist())
    finally:
        store.close()
    for fold in (False, True):
        store = Store.open(path)  # the seen index is loaded from the views
        try:
            _seen_checks(store, stream, order)
            if fold:
                store.compact()
                assert _staged(store, seen=True) == {}
        finally:
            store.close()
    store = Store.open(path)  # and from the bases after the fold
    try:
        _seen_checks(store, stream, order)
    finally:
        store.close()


def test_staged_seen_hashes_read_back_bit_for_bit(tmp_path: Path) -> None:
    """A 64-bit half above 2**63 - 1 is staged as the BIGINT of the same bits and read
    back as the UBIGINT it was: every applied event's id and every order's key, staged
    and folded, is the hash SQL computes from the raw rows."""
    stream = Stream()
    store = Store.open(tmp_path / "pulse.duckdb")
    missing = (
        "SELECT (SELECT count(*) FROM order_events"
        "  WHERE md5_number_lower(event_id) NOT IN (SELECT h FROM seen_events)),"
        " (SELECT count(*) FROM order_events"
        "  WHERE md5_number('o:' || order_id) NOT IN (SELECT k FROM seen_keys)),"
        " (SELECT count(*) FROM seen_events WHERE h >= 9223372036854775808),"
        " (SELECT count(*) FROM seen_keys WHERE k >> 64 >= 9223372036854775808"
        "  AND k & 18446744073709551615 >= 9223372036854775808)"
    )
    try:
        store.apply_batch([stream.order(f"O-{n}", id=f"e-{n}") for n in range(60)])
        for _ in range(2):  # staged, then folded
            lost_ids, lost_keys, high_ids, high_keys = store.read(
                lambda cur: cur.execute(missing).fetchall()
            )[0]
            assert (lost_ids, lost_keys) == (0, 0)
            assert high_ids > 0 and high_keys > 0  # the halves that need the mask
            store.compact()
        assert _staged(store, seen=True) == {}
    finally:
        store.close()


def _insert_staged(
    conn: duckdb.DuckDBPyConnection, table: str, names: list[str], rows: list[Any]
) -> None:
    """Rows of a raw table into ``raw_staged`` as version 14 wrote them (``staged.SLOTS``;
    a date as its days since 1970-01-01)."""
    slots = [staged.SLOTS[table][name] for name in names]
    days = [[(v - date(1970, 1, 1)).days if type(v) is date else v for v in row] for row in rows]
    _insert(conn, staged.STAGED, ["raw_table", *slots], [(table, *row) for row in days])


def test_upgrade_from_version_14_stages_seen_rows_without_losing_one(tmp_path: Path) -> None:
    """Version 14 kept the seen ids and keys in tables of their own: m0015 folds the raw
    rows staged so far, makes both a base and a view, keys as two halves, and the store
    finds every id and key it found before."""
    rows = _stream_rows(tmp_path / "current.duckdb")
    conn = file_before(tmp_path / "pulse.duckdb", 15)
    try:
        for table, (names, values) in rows.items():
            _insert(conn, staged.base(table), names, values[::2])
            _insert_staged(conn, table, names, values[1::2])
        conn.execute(
            "INSERT INTO seen_events SELECT md5_number_lower(event_id) FROM order_events"
            " UNION ALL SELECT md5_number_lower(event_id) FROM invoice_events"
        )
        conn.execute(
            "INSERT INTO seen_keys SELECT md5_number('o:' || order_id), sequence FROM order_events"
        )
        before = _raw(conn)
        ids = sorted(conn.execute("SELECT h FROM seen_events").fetchall())
        keys = sorted(conn.execute("SELECT k, sequence FROM seen_keys").fetchall())
        assert len(ids) > len(keys) > 10
    finally:
        conn.close()
    store = Store.open(tmp_path / "pulse.duckdb")
    try:
        assert store.read(_raw) == before
        assert _staged(store, seen=True) == {}
        read = store.read(lambda c: c.execute("SELECT h FROM seen_events").fetchall())
        assert sorted(read) == ids
        read = store.read(lambda c: c.execute("SELECT k, sequence FROM seen_keys").fetchall())
        assert sorted(read) == keys
        order_ids = [r[rows["order_events"][0].index("order_id")] for r in rows["order_events"][1]]
        assert store._seen.find_keys([f"o:{o}" for o in order_ids]).keys() == {
            f"o:{o}" for o in order_ids
        }
    finally:
        store.close()
