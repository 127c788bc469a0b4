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
from materializer.aggregates.batch import Batch
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
#: Every raw table and its base.
RAW = {*staged.TABLES, *(staged.base(t) for t in staged.TABLES)}


def _staged(store: Store) -> dict[str, int]:
    return dict(
        store.read(
            lambda cur: cur.execute(
                f"SELECT raw_table, count(*) FROM {staged.STAGED} GROUP BY ALL"
            ).fetchall()
        )
    )


def _raw(cur: duckdb.DuckDBPyConnection) -> dict[str, list[Any]]:
    """Every raw table's rows, read through its view (sorted)."""
    return {t: cur.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in staged.TABLES}


def _base_rows(store: Store) -> int:
    union = " UNION ALL ".join(f"SELECT 1 FROM {staged.base(t)}" for t in staged.TABLES)
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
            slots = staged.SLOTS[table]
            names = [slots[d[0]] for d in full[table] if d[0] != missing]
            values = ", ".join(filler[types[n]] for n in names)
            insert = (
                f"INSERT INTO {staged.STAGED} (raw_table, {', '.join(names)})"
                f" VALUES ('{table}', {values})"
            )
            with pytest.raises(duckdb.ConstraintException):
                conn.execute(insert)
            # The same row with the column: accepted (the constraint is that column's).
            conn.execute("BEGIN")
            conn.execute(
                f"INSERT INTO {staged.STAGED} (raw_table, {', '.join([*names, slots[missing]])})"
                f" VALUES ('{table}', {values}, {filler[types[slots[missing]]]})"
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
            for table in staged.TABLES:
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
    assert all(rows[t][1] for t in staged.TABLES)  # the mix has rows of every table
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
    monkeypatch.setattr(staged, "FOLD_ROWS", 5)
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
