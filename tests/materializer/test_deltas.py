"""Aggregate deltas: batches append, the store folds them into the bases between batches;
no read answers differently, whether the rows are folded, waiting, or a restart away."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import pyarrow as pa
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from materializer.aggregates import FOLDED, columns, deltas, pipeline, sales, stock
from materializer.aggregates.batch import Batch
from materializer.store import RawMessage, Store
from tests.materializer.eventkit import DAY, Stream

READS: list[tuple[str, dict[str, Any]]] = [
    ("sales_by_hour", DAY),
    ("sales_by_hour", {**DAY, "channel": "shop"}),
    ("sales_by_channel", DAY),
    ("sales_summary", DAY),
    ("top_products", DAY),
    ("stock_levels", {}),
    ("low_stock", {}),
]


def answers(store: Store) -> list[Any]:
    return [store.query(name, params).wire for name, params in READS]


def traffic(stream: Stream, batches: int, seed: int = 3) -> list[list[RawMessage]]:
    """Orders over a few hours and channels, cancellations of new and old orders (some
    before their order), stock movements and reorder points."""
    rng = random.Random(seed)
    out: list[list[RawMessage]] = []
    orders = 0
    for _ in range(batches):
        batch = []
        for _ in range(rng.randint(1, 12)):
            roll = rng.random()
            hour = rng.randint(0, 5)
            time = f"2026-11-25T{hour:02d}:{rng.randint(0, 59):02d}:00Z"
            if roll < 0.45:
                orders += 1
                sku = f"SKU-{rng.randint(1, 6)}"
                quantity, price = rng.randint(1, 4), f"{rng.randint(1, 9999) / 100:.2f}"
                channel = rng.choice(["web", "shop", "phone"])
                batch.append(
                    stream.order(
                        f"O-{orders}", lines=[(sku, quantity, price)], channel=channel, time=time
                    )
                )
            elif roll < 0.6 and orders:
                # Now and then one of an order that comes later (it waits for it).
                batch.append(stream.cancel(f"O-{rng.randint(1, orders + 2)}", time=time))
            elif roll < 0.95:
                sku, warehouse = f"SKU-{rng.randint(1, 6)}", rng.choice(["W1", "W2"])
                batch.append(stream.move(sku, warehouse, rng.randint(-9, 20), time=time))
            else:
                batch.append(stream.product(f"SKU-{rng.randint(1, 6)}", reorder_point=5))
        out.append(batch)
    return out


def delta_rows(store: Store) -> int:
    return store.read(lambda cursor: deltas.pending_rows(cursor, FOLDED))


def base_keys_unique(store: Store) -> bool:
    sql = (
        "SELECT (SELECT count(*) FROM sales_by_hour_base) = (SELECT count(DISTINCT (hour,"
        " channel)) FROM sales_by_hour_base) AND (SELECT count(*) FROM"
        " product_sales_by_hour_base) = (SELECT count(DISTINCT (hour, sku)) FROM"
        " product_sales_by_hour_base) AND (SELECT count(*) FROM stock_snapshot_base) ="
        " (SELECT count(DISTINCT (sku, warehouse)) FROM stock_snapshot_base)"
    )
    return bool(store.read(lambda cursor: cursor.execute(sql).fetchall())[0][0])


def test_folding_changes_no_answer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same traffic into a store that never folds and one that folds every few batches
    gives the same answers after every batch; an explicit fold changes nothing either."""
    monkeypatch.setattr(deltas, "COMPACT_ROWS", 10**9)
    never = Store.open(tmp_path / "never.duckdb")
    often = Store.open(tmp_path / "often.duckdb")
    try:
        for number, batch in enumerate(traffic(Stream(), 120)):
            never.apply_batch(batch)
            monkeypatch.setattr(deltas, "COMPACT_ROWS", 25)
            often.apply_batch(batch)
            monkeypatch.setattr(deltas, "COMPACT_ROWS", 10**9)
            if number % 10 == 0:
                assert answers(often) == answers(never)
        assert answers(often) == answers(never)
        assert delta_rows(often) < delta_rows(never)
        expected = answers(never)
        assert any(expected[0]) and any(expected[5])  # the traffic reached the tables
        never.compact()
        assert delta_rows(never) == 0
        assert answers(never) == expected
        assert base_keys_unique(never) and base_keys_unique(often)
    finally:
        never.close()
        often.close()


def test_a_batch_appends_to_the_deltas_and_the_fold_empties_them(
    store: Store, stream: Stream
) -> None:
    store.apply_batch([stream.order("O-1"), stream.move("SKU-1", "W1", 5)])
    store.apply_batch([stream.order("O-2"), stream.move("SKU-1", "W1", -2)])
    # Two batches, each one row per table: sales, product sales, stock and the pipeline
    # state (``pipeline.PIPELINE_STATE``).
    assert delta_rows(store) == 8
    levels = store.query("stock_levels", {}).wire
    assert [(r["sku"], r["on_hand"]) for r in levels] == [("SKU-1", 3)]
    store.compact()
    assert delta_rows(store) == 0
    assert store.query("stock_levels", {}).wire == levels
    assert store.query("sales_summary", DAY).wire["orders"] == 2


def test_the_store_folds_once_the_deltas_reach_the_threshold(
    store: Store, stream: Stream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(deltas, "COMPACT_ROWS", 5)
    store.apply_batch([stream.order("O-1"), stream.move("SKU-1", "W1", 5)])  # 4 rows
    store.apply_batch([stream.order("O-2"), stream.move("SKU-2", "W1", 1)])  # 8 rows
    assert delta_rows(store) == 8
    store.apply_batch([stream.move("SKU-1", "W1", 1)])  # folds first, then 2 rows
    assert delta_rows(store) == 2
    assert store.query("sales_summary", DAY).wire["orders"] == 2
    levels = store.query("stock_levels", {}).wire
    assert [(r["sku"], r["on_hand"]) for r in levels] == [("SKU-1", 6), ("SKU-2", 1)]


def test_deltas_survive_a_restart_and_count_towards_the_next_fold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "pulse.duckdb"
    stream = Stream()
    store = Store.open(path)
    store.apply_batch([stream.order("O-1"), stream.move("SKU-1", "W1", 5)])
    before = answers(store)
    store.close()
    monkeypatch.setattr(deltas, "COMPACT_ROWS", 3)
    store = Store.open(path)
    try:
        assert delta_rows(store) == 4
        assert answers(store) == before
        store.apply_batch([stream.cancel("O-1")])  # folds the 4 rows first
        assert delta_rows(store) == 3  # the cancellation's sales and product rows, its state
        assert store.query("sales_summary", DAY).wire["cancelled_orders"] == 1
        assert store.query("stock_levels", {}).wire[0]["on_hand"] == 5
    finally:
        store.close()


def test_the_snapshot_view_folds_movements_of_one_key_across_base_and_delta(
    store: Store, stream: Stream
) -> None:
    store.apply_batch([stream.move("SKU-1", "W1", 5, time="2026-11-25T11:00:00Z")])
    store.compact()
    store.apply_batch([stream.move("SKU-1", "W1", -7, time="2026-11-25T09:00:00Z")])
    (row,) = store.query("stock_levels", {}).wire
    assert row["on_hand"] == -2
    assert row["last_movement_at"] == "2026-11-25T11:00:00+00:00"  # the latest, not the last


def test_folding_an_empty_store_does_nothing(store: Store) -> None:
    store.compact()
    assert delta_rows(store) == 0
    assert answers(store) == answers(store)
    assert store.query("stock_levels", {}).wire == []


#: The text columns of the deltas (the others are numbers or times).
_TEXT = ("channel", "sku", "warehouse", "site")


def test_a_null_never_reaches_a_delta_or_the_settled_invoices(store: Store) -> None:
    """A NULL fails the insert of the batch that carries it (which is then split down to
    the one event), never the fold before some later batch (m0010, m0012): each column
    of an aggregate's rows in ``aggregate_deltas``, and every column of
    ``settled_invoices`` but the optional order id."""
    nullable = store.read(
        lambda cur: cur.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE is_nullable = 'YES' AND table_name = 'settled_invoices'"
        ).fetchall()
    )
    assert nullable == [("order_id",)]
    times = store.read(
        lambda cur: cur.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ?"
            " AND data_type = 'TIMESTAMP WITH TIME ZONE'",
            [deltas.DELTAS],
        ).fetchall()
    )
    assert ("last_movement_at",) in times
    for table in FOLDED:
        # Each column where the table's delta rows keep it (``Folded.slots``); a key
        # that is a constant is no column.
        columns = [
            table.slot(c)
            for c in (*table.keys, *table.sums, *table.latest)
            if table.slot(c).isidentifier()
        ]
        if "site" not in columns:
            columns.append("site")  # NOT NULL in every row
        nullable = [table.slot(c) for c in table.nullable]
        given = {c: "now()" if (c,) in times else "'x'" if c in _TEXT else "1" for c in columns}
        # None: every column given, the row goes in; so it does with any one the
        # aggregate declares nullable left NULL.
        for column in nullable:
            store.conn.execute("BEGIN")
            try:
                store.conn.execute(
                    f"INSERT INTO {deltas.DELTAS} (aggregate, {', '.join(columns)})"
                    f" VALUES ('{table.name}',"
                    f" {', '.join('NULL' if c == column else given[c] for c in columns)})"
                )
            finally:
                store.conn.execute("ROLLBACK")
        for column in (None, *(c for c in columns if c not in nullable)):
            values = [given[c] if c != column else "NULL" for c in columns]
            insert = (
                f"INSERT INTO {deltas.DELTAS} (aggregate, {', '.join(columns)})"
                f" VALUES ('{table.name}', {', '.join(values)})"
            )
            store.conn.execute("BEGIN")
            try:
                if column is None:
                    store.conn.execute(insert)
                else:
                    with pytest.raises(duckdb.ConstraintException):
                        store.conn.execute(insert)
            finally:
                store.conn.execute("ROLLBACK")
    with pytest.raises(duckdb.ConstraintException):  # an aggregate that is not one
        store.conn.execute(f"INSERT INTO {deltas.DELTAS} (aggregate, site) VALUES ('x', '')")


MAX_PRICE = "9999999999999999.99"


def delta_contents(store: Store) -> list[Any]:
    """Each grouped aggregate's delta rows: keys, then sums, then latest values (the
    pipeline state's are a row per batch, with the time it was applied)."""
    return [
        store.read(
            lambda cur, t=table: cur.execute(f"SELECT * FROM {t.delta} ORDER BY ALL").fetchall()
        )
        for table in FOLDED
        if table is not pipeline.PIPELINE_STATE
    ]


def test_grouping_in_python_and_in_duckdb_append_the_same_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Small batches group their delta rows in Python, large ones in DuckDB
    (``GROUP_IN_PYTHON_MAX``): the same batches give the same delta rows either way,
    sites, repeated keys, cancellations and the largest sums included (a line's
    quantity x unit price added up past 28 digits: Python's default decimal precision)."""
    stream = Stream()
    sites = ("wh1", "wh2", None)
    batches = [
        [
            RawMessage(m.sequence, m.subject, m.data, m.received, sites[m.sequence % 3])
            for m in batch
        ]
        for batch in traffic(stream, 40, seed=11)
    ]
    big_line = ("SKU-1", 999_999_999, MAX_PRICE)
    big = [
        stream.order(f"BIG-{i}", lines=[big_line] * 300, total=MAX_PRICE, channel="web")
        for i in range(3)
    ]
    moves = [stream.move("SKU-9", "W1", 10**9 * (-1) ** i) for i in range(300)]
    batches += [big, moves, [stream.cancel("BIG-1"), stream.cancel("BIG-2")]]
    monkeypatch.setattr(deltas, "COMPACT_ROWS", 10**9)
    stores = {}
    for name, most in (("python", 10**9), ("duckdb", 0)):
        monkeypatch.setattr(deltas, "GROUP_IN_PYTHON_MAX", most)
        for module in ("sales", "stock"):
            monkeypatch.setattr(f"materializer.aggregates.{module}.GROUP_IN_PYTHON_MAX", most)
        stores[name] = store = Store.open(tmp_path / f"{name}.duckdb")
        for batch in batches:
            store.apply_batch(batch)
    try:
        python, duckdb_grouped = (delta_contents(stores[n]) for n in ("python", "duckdb"))
        assert python == duckdb_grouped
        assert all(python)  # every delta took rows
        # The big orders' revenue: 900 lines of ~10^9 x the largest price, to the cent.
        # product_sales_by_hour_delta: hour, sku, site, units, revenue, cancelled_...
        (row,) = [r for r in python[1] if r[1] == "SKU-1" and r[4] >= 10**24]
        units = 900 * 999_999_999
        assert (row[3], row[4]) == (units, units * Decimal(MAX_PRICE))
        assert answers(stores["python"]) == answers(stores["duckdb"])
    finally:
        for store in stores.values():
            store.close()


#: Up to a line's largest quantity x unit price (10^9 x 10^16, docs/EVENTS.md "Limits"):
#: sixty of them add up past the 28 digits of Python's default decimal context.
_LINE = Decimal(10**25) - Decimal("0.01")
_MONEY = st.decimals(min_value=-_LINE, max_value=_LINE, places=2, allow_nan=False)
#: Event times inside the contract's window (docs/EVENTS.md, "Limits"), in any offset.
_TIMES = st.builds(
    lambda moment, minutes: moment.astimezone(timezone(timedelta(minutes=minutes))),
    st.datetimes(datetime(1970, 1, 2), datetime(2199, 12, 30), timezones=st.just(UTC)),
    st.integers(-900, 900),
)
_KEYS = st.tuples(
    st.sampled_from(["", "SKU-1", "sku-1", "ß", "\u00e9", "e\u0301", "🙂"]),
    st.sampled_from(["", "wh1", "wh-2"]),
)
_VALUES = st.tuples(st.integers(-(10**13), 10**13), _MONEY, _TIMES)
_GROUPED: dict[str, columns.Kind] = {
    "k1": columns.strings,
    "k2": columns.strings,
    "n": columns.decimals("DECIMAL(38,0)"),
    "money": columns.sums,
    "latest": columns.times,
}


@settings(max_examples=120, deadline=None)
@given(rows=st.lists(st.tuples(_KEYS, _VALUES), max_size=60))
@example(rows=[(("SKU-1", ""), (10**13, _LINE, datetime(2199, 12, 29, tzinfo=UTC)))] * 12)
def test_grouping_in_python_equals_duckdbs_group_by(
    rows: list[tuple[tuple[str, str], tuple[int, Decimal, datetime]]],
) -> None:
    """``group_in_python`` against DuckDB's ``GROUP BY`` of the same rows: equal keys
    (unicode compared as DuckDB does, byte for byte), exact sums of the largest values,
    the latest of times given in any offset."""
    frame = deltas.group_in_python(((k, (n, m, t)) for k, (n, m, t) in rows), 2, _GROUPED)
    grouped = columns.values(frame)  # noqa: F841 - read by DuckDB below
    # The reference: the same rows as an Arrow table, grouped by DuckDB.
    raw = pa.table(  # noqa: F841 - read by DuckDB below
        {
            "k1": pa.array([k[0] for k, _ in rows], pa.string()),
            "k2": pa.array([k[1] for k, _ in rows], pa.string()),
            "n": pa.array([v[0] for _, v in rows], pa.decimal128(38, 0)),
            "money": pa.array([v[1] for _, v in rows], pa.decimal128(38, 2)),
            "latest": pa.array([v[2] for _, v in rows], pa.timestamp("us", tz="UTC")),
        }
    )
    with duckdb.connect() as conn:
        conn.execute("SET TimeZone = 'UTC'")
        expected = conn.execute(
            "SELECT k1, k2, sum(n), sum(money), max(latest) FROM raw GROUP BY ALL ORDER BY ALL"
        ).fetchall()
        typed = f"SELECT {columns.reads(frame)} FROM grouped"
        got = conn.execute(f"{typed} ORDER BY ALL").fetchall()
        types = [t for _, t, *_ in conn.execute(f"DESCRIBE {typed}").fetchall()]
    assert got == expected
    assert types == [
        "VARCHAR",
        "VARCHAR",
        "DECIMAL(38,0)",
        "DECIMAL(38,2)",
        "TIMESTAMP WITH TIME ZONE",
    ]


#: Each folded aggregate's delta columns as the store builds them for
#: ``Batch.append_delta`` (``group_in_python``'s kinds; stock's times as microseconds).
_DELTA_KINDS: dict[str, dict[str, columns.Kind]] = {
    sales.SALES_BY_HOUR.name: sales._SALES_ROW,
    sales.PRODUCT_SALES_BY_HOUR.name: sales._PRODUCT_SALES_ROW,
    stock.STOCK_SNAPSHOT.name: stock._DELTA_ROWS,
    # As ``pipeline.record`` builds its row: in the other aggregates' columns (``slots``).
    pipeline.PIPELINE_STATE.name: {
        "site": columns.strings,
        "events_applied": columns.ints,
        "events_rejected": columns.ints,
        "events_duplicate": columns.ints,
        "batches": columns.ints,
        "last_sequence": columns.ints,
        "last_event_time": columns.instants,
        "last_batch_at": columns.instants,
        "central_last_event_time": columns.instants,
    },
}
_BY_NAME = {table.name: table for table in FOLDED}
_COUNTS = st.integers(0, 2**63 - 1)
_UNIT_COUNTS = st.integers(-(10**30), 10**30)
_ROW_VALUES = {
    "hour": _TIMES,
    "last_movement_at": _TIMES,
    "channel": st.sampled_from(["web", "pos", "🙂", ""]),
    "sku": st.sampled_from(["SKU-1", "ß", "e\u0301", ""]),
    "warehouse": st.sampled_from(["W1", ""]),
    "site": st.sampled_from(["", "wh1"]),
    "orders": st.integers(-(2**63), 2**63 - 1),
    "cancelled_orders": st.integers(-(2**63), 2**63 - 1),
    "on_hand": st.integers(-(2**63), 2**63 - 1),
    "units": _UNIT_COUNTS,
    "cancelled_units": _UNIT_COUNTS,
    "gross_revenue": _MONEY,
    "cancelled_revenue": _MONEY,
    "revenue": _MONEY,
    "events_applied": _COUNTS,
    "events_rejected": _COUNTS,
    "events_duplicate": _COUNTS,
    "batches": _COUNTS,
    "last_sequence": _COUNTS,
    "last_event_time": _TIMES,
    "last_batch_at": _TIMES,
    "central_last_event_time": _TIMES,
}


def _rows(name: str, count: int) -> st.SearchStrategy[list[tuple[Any, ...]]]:
    row = st.tuples(*(_ROW_VALUES[column] for column in _DELTA_KINDS[name]))
    return st.lists(row, min_size=count, max_size=count)


@st.composite
def _delta_parts(draw: st.DrawFn) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """One to four aggregates in any order, each with a few rows, or with many rows of
    one value repeated: more than DuckDB samples to type an object column, so the
    aggregates after it find their columns' first values NULL."""
    names = draw(st.permutations(list(_DELTA_KINDS)))[: draw(st.integers(1, 4))]
    parts = []
    for name in names:
        if draw(st.booleans()):
            parts.append((name, draw(_rows(name, draw(st.integers(1, 5))))))
        else:
            parts.append((name, draw(_rows(name, 1)) * draw(st.integers(1, 1500))))
    return parts


@pytest.fixture(scope="module")
def parts_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """One store for every example: opening one per example would take most of the time."""
    store = Store.open(tmp_path_factory.mktemp("parts") / "parts.duckdb")
    try:
        yield store
    finally:
        store.close()


@settings(max_examples=40, deadline=None)
@given(parts=_delta_parts())
def test_one_append_of_several_aggregates_keeps_every_value_of_each(
    parts_store: Store, parts: list[tuple[str, list[tuple[Any, ...]]]]
) -> None:
    """``Batch.append_delta`` of each part, then the batch's one INSERT: each aggregate's
    rows read back with the values its own columns gave them (the largest integers,
    sums and times in any offset, unicode keys), none lost to another's NULLs."""
    cur = parts_store.conn
    cur.execute("BEGIN")
    try:
        batch = Batch(cur)
        for name, rows in parts:
            kinds = _DELTA_KINDS[name]
            frame = {
                column: kind(
                    map(columns.utc_micros, values) if kind is columns.instants else values
                )
                for (column, kind), values in zip(
                    kinds.items(), zip(*rows, strict=True), strict=True
                )
            }
            batch.append_delta(_BY_NAME[name], frame)
        assert batch.delta_rows == sum(len(rows) for _, rows in parts)
        batch.finish()
        for name, rows in parts:
            got = cur.execute(f"SELECT * FROM {_BY_NAME[name].delta}").fetchall()
            if name == pipeline.PIPELINE_STATE.name:  # its key is 1, its site not read
                rows = [(1, *row[1:]) for row in rows]
            assert sorted(got) == sorted(rows), name
        (other,) = cur.execute(
            f"SELECT count(*) FROM {deltas.DELTAS} WHERE aggregate NOT IN"
            f" (SELECT unnest(?::VARCHAR[]))",
            [[name for name, _ in parts]],
        ).fetchall()[0]
        assert other == 0
    finally:
        cur.execute("ROLLBACK")


def test_the_pipeline_state_view_reads_what_its_slots_say(store: Store, stream: Stream) -> None:
    """The view ``pipeline_state`` (m0016's SQL) and ``pipeline.PIPELINE_STATE``'s slots
    read the same columns of the deltas: they answer alike with rows waiting and after a
    fold, with NULL times (a batch of a duplicate and a reject; a batch of a named site
    alone, which has no event of the central site) and the central site's latest time."""
    table = pipeline.PIPELINE_STATE
    names = ", ".join((*table.keys, *table.sums, *table.latest))

    def both() -> tuple[list[Any], list[Any]]:
        return store.read(
            lambda cur: (
                cur.execute(f"SELECT {names} FROM pipeline_state").fetchall(),
                cur.execute(f"SELECT {names} FROM ({table.content_sql()})").fetchall(),
            )
        )

    first = stream.order("O-1", time="2026-11-25T10:00:00Z")
    store.apply_batch([first, stream.move("SKU-1", "W1", 5, time="2026-11-25T09:00:00Z")])
    store.apply_batch([stream.raw(first.data), stream.raw(b"{")])
    named = msgspec.structs.replace(stream.order("O-2", time="2026-11-25T12:00:00Z"), site="wh1")
    store.apply_batch([named])
    view, slots = both()
    assert view == slots
    ((_, applied, rejected, duplicates, batches, last, latest, _, central),) = view
    assert (applied, rejected, duplicates, batches, last) == (3, 1, 1, 3, 5)
    assert latest == datetime(2026, 11, 25, 12, tzinfo=UTC)
    assert central == datetime(2026, 11, 25, 10, tzinfo=UTC)  # not wh1's later order
    assert store.read(lambda cur: deltas.pending_rows(cur, (table,))) == 3
    store.compact()
    assert both() == (view, view)
    assert store.read(lambda cur: deltas.pending_rows(cur, (table,))) == 0
    store.apply_batch([stream.move("SKU-1", "W1", 1, time="2026-11-25T08:00:00Z")])
    view, slots = both()
    assert view == slots
    assert view[0][4:7] == (4, 6, datetime(2026, 11, 25, 12, tzinfo=UTC))  # the maxima kept


def test_a_large_value_past_duckdbs_sample_of_an_object_column_goes_in(
    parts_store: Store,
) -> None:
    """``on_hand`` is an object array when a part lacks it (a product sales row) beside
    the pipeline state's rows (``batches`` in that slot) and the stock's: DuckDB types it
    from a sample of 1,000 values, which here are all 1, and the stock's 2**40 after them
    would fail the batch as out of range for an INTEGER (``Batch.finish`` widens the
    sample for a larger append)."""
    cur = parts_store.conn
    cur.execute("BEGIN")
    try:
        batch = Batch(cur)
        batch.append_delta(
            sales.PRODUCT_SALES_BY_HOUR,
            {
                "hour": columns.instants([0]),
                "sku": columns.strings(["SKU-1"]),
                "site": columns.strings([""]),
                "units": columns.ints([1]),
                "revenue": columns.sums([Decimal("1.00")]),
                "cancelled_units": columns.ints([0]),
                "cancelled_revenue": columns.sums([Decimal("0.00")]),
            },
        )
        times = columns.instants([0] * 2_998)
        batch.append_delta(
            pipeline.PIPELINE_STATE,
            {
                "site": columns.strings([""] * 2_998),
                **{c: columns.ints([1] * 2_998) for c in pipeline.PIPELINE_STATE.sums},
                "last_sequence": columns.ints(range(2_998)),
                "last_event_time": times,
                "last_batch_at": times,
                "central_last_event_time": times,
            },
        )
        batch.append_delta(
            stock.STOCK_SNAPSHOT,
            {
                "sku": columns.strings(["SKU-1"]),
                "warehouse": columns.strings(["W1"]),
                "site": columns.strings([""]),
                "on_hand": columns.ints([2**40]),
                "last_movement_at": columns.instants([0]),
            },
        )
        batch.finish()
        got = cur.execute(f"SELECT on_hand FROM {stock.STOCK_SNAPSHOT.delta}").fetchall()
        assert got == [(2**40,)]
    finally:
        cur.execute("ROLLBACK")
