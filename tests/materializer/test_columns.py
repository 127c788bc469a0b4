"""The write path's columns (``materializer.aggregates.columns``): every kind of value an
event carries reaches DuckDB exactly, at the limits of its type, and a frame has its
declared types with no rows at all."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import duckdb
import numpy as np
import pytest
from hypothesis import Phase, example, given, settings
from hypothesis import strategies as st

from materializer import db
from materializer.aggregates import columns
from materializer.aggregates.batch import Batch

#: Money within the contract's limits (docs/EVENTS.md, "Limits"): two places.
_MONEY = st.decimals(
    min_value=Decimal("-9999999999999999.99"),
    max_value=Decimal("9999999999999999.99"),
    places=2,
    allow_nan=False,
)
#: Sums: DECIMAL(38,2), to their last digit (written out: arithmetic would round them
#: to the 28 digits of the default decimal context).
_LARGEST_SUM = Decimal("9" * 36 + ".99")
_SMALLEST_SUM = Decimal("-" + "9" * 36 + ".99")
_SUMS = st.decimals(min_value=_SMALLEST_SUM, max_value=_LARGEST_SUM, places=2, allow_nan=False)
_TIMES = st.builds(
    lambda moment, minutes: moment.astimezone(timezone(timedelta(minutes=minutes))),
    st.datetimes(datetime(1, 1, 2), datetime(9999, 12, 30), timezones=st.just(UTC)),
    st.integers(-900, 900),
)
_TEXT = st.text(max_size=40)  # any unicode, surrogates aside (events are UTF-8)


@pytest.fixture(scope="module")
def conn() -> Iterator[duckdb.DuckDBPyConnection]:
    with duckdb.connect() as connection:
        connection.execute("SET TimeZone = 'UTC'")
        yield connection


def _read(conn: duckdb.DuckDBPyConnection, frame: columns.Frame) -> list[tuple[Any, ...]]:
    scanned = columns.values(frame)  # noqa: F841 - read by DuckDB below
    return conn.execute(f"SELECT * FROM {columns.scan(frame, 'scanned')}").fetchall()


def _types(conn: duckdb.DuckDBPyConnection, frame: columns.Frame) -> list[str]:
    scanned = columns.values(frame)  # noqa: F841 - read by DuckDB below
    described = conn.execute(f"DESCRIBE SELECT * FROM {columns.scan(frame, 'scanned')}")
    return [row[1] for row in described.fetchall()]


# No explain phase: on Python 3.11 it traces every line and outlasts the test's timeout.
@settings(max_examples=60, deadline=None, phases=[p for p in Phase if p != Phase.explain])
@given(
    rows=st.lists(
        st.tuples(
            st.one_of(st.none(), _TEXT),
            _TIMES,
            st.dates(),
            _MONEY,
            _SUMS,
            st.integers(-(2**63), 2**63 - 1),
            st.integers(-(2**31), 2**31 - 1),
            st.binary(max_size=40),
        ),
        max_size=30,
    )
)
@example(rows=[])
@example(
    rows=[
        ("", datetime(1, 1, 1, tzinfo=UTC), date(1, 1, 1), Decimal("-9999999999999999.99"),
         _SMALLEST_SUM, -(2**63), -(2**31), b""),
        ("🙂e\u0301\x00", datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
         date(9999, 12, 31), Decimal("1E+2"), _LARGEST_SUM, 2**63 - 1, 2**31 - 1,
         b"\x00\xff"),
    ]
)  # fmt: skip
def test_every_kind_reads_back_exactly(
    conn: duckdb.DuckDBPyConnection, rows: list[tuple[Any, ...]]
) -> None:
    values = [list(c) for c in zip(*rows, strict=True)] or [[] for _ in range(8)]
    text, moments, days, money, sums, big, small, raw = values
    frame = {
        "text": columns.strings(text),
        "moment": columns.times(moments),
        "day": columns.dates(days),
        "money": columns.amounts(money),
        "sum": columns.sums(sums),
        "big": columns.ints(big),
        "small": columns.int32s(small),
        "raw": columns.blobs(raw),
    }
    got = _read(conn, frame)
    assert got == [
        (t, m.astimezone(UTC), d, money_value, s, b, i, bytes(r))
        for t, m, d, money_value, s, b, i, r in rows
    ]
    # Decimal equality ignores the exponent: the scale is the column's.
    assert all(row[3].as_tuple().exponent == -2 for row in got)
    assert _types(conn, frame) == [
        "VARCHAR",
        "TIMESTAMP WITH TIME ZONE",
        "DATE",
        "DECIMAL(18,2)",
        "DECIMAL(38,2)",
        "BIGINT",
        "INTEGER",
        "BLOB",
    ]


@settings(max_examples=30, deadline=None)
@given(
    rows=st.lists(st.tuples(_TEXT, _TIMES, st.dates(), _MONEY, st.binary(max_size=20)), max_size=20)
)
def test_an_insert_of_the_arrays_as_they_are_stores_what_the_typed_read_gives(
    tmp_path_factory: pytest.TempPathFactory, rows: list[tuple[Any, ...]]
) -> None:
    """``Batch.insert`` leaves the casts to the INSERT (a time's TIMESTAMP in the session's
    time zone): in a store connection, UTC, the rows equal the typed read's."""
    path = tmp_path_factory.mktemp("insert") / "columns.duckdb"
    with db.connect(path) as conn:
        conn.execute(
            "CREATE TABLE t (text VARCHAR, moment TIMESTAMPTZ, day DATE,"
            " money DECIMAL(18,2), raw BLOB)"
        )
        values = [list(c) for c in zip(*rows, strict=True)] or [[] for _ in range(5)]
        text, moments, days, money, raw = values
        frame = {
            "raw": columns.blobs(raw),  # BY NAME: any order
            "text": columns.strings(text),
            "moment": columns.times(moments),
            "day": columns.dates(days),
            "money": columns.amounts(money),
        }
        batch = Batch(conn)
        batch.insert("t", frame)
        batch.finish()
        stored = conn.execute("SELECT * FROM t").fetchall()
        scanned = columns.values(frame)  # noqa: F841 - read by DuckDB below
        typed = conn.execute(
            f"SELECT text, moment, day, money, raw FROM {columns.scan(frame, 'scanned')}"
        ).fetchall()
    assert stored == typed == [(t, m, d, a, r) for t, m, d, a, r in rows]


def test_a_frame_without_rows_keeps_its_types(conn: duckdb.DuckDBPyConnection) -> None:
    frame = {
        "text": columns.strings([]),
        "site": columns.repeated("", 0),
        "raw": columns.blobs([]),
        "moment": columns.times([]),
        "hashes": columns.uint64s(np.empty(0, np.uint64)),
    }
    assert _read(conn, frame) == []
    assert _types(conn, frame) == [
        "VARCHAR",
        "VARCHAR",
        "BLOB",
        "TIMESTAMP WITH TIME ZONE",
        "UBIGINT",
    ]
    assert columns.rows(frame) == 0


def test_strings_whose_first_is_null_are_still_strings(conn: duckdb.DuckDBPyConnection) -> None:
    frame = {"text": columns.strings([None, "a"]), "none": columns.strings([None, None])}
    assert _read(conn, frame) == [(None, None), ("a", None)]
    assert _types(conn, frame) == ["VARCHAR", "VARCHAR"]


def test_hashes_read_as_unsigned_from_a_strided_view(conn: duckdb.DuckDBPyConnection) -> None:
    halves = np.array([[2**64 - 1, 1], [0, 2**63]], dtype=np.uint64)
    frame = {"lo": columns.uint64s(halves[:, 0]), "hi": columns.uint64s(halves[:, 1])}
    assert _read(conn, frame) == [(2**64 - 1, 1), (0, 2**63)]


def test_a_sum_past_its_decimal_is_refused(conn: duckdb.DuckDBPyConnection) -> None:
    frame = {"sum": columns.sums([_LARGEST_SUM + Decimal("0.01")])}
    with pytest.raises(duckdb.ConversionException):
        _read(conn, frame)


@settings(max_examples=200, deadline=None)
@given(moment=_TIMES)
@example(moment=datetime(1, 1, 1, tzinfo=UTC))
@example(moment=datetime(1, 1, 1, 14, tzinfo=timezone(timedelta(hours=14))))
@example(moment=datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC))
@example(moment=datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC))
@example(moment=datetime(1970, 1, 1, 1, tzinfo=timezone(timedelta(hours=1))))
def test_utc_micros_is_the_instant_to_the_microsecond(moment: datetime) -> None:
    """``utc_micros`` (what the write path keeps of an event's time) agrees with
    timedelta's own division, before the epoch too, and ``from_micros`` gives back the
    same instant in UTC."""
    micros = columns.utc_micros(moment)
    assert micros == (moment - columns.EPOCH) // timedelta(microseconds=1)
    back = columns.from_micros(micros)
    assert back == moment
    assert back.utcoffset() == timedelta(0)


def test_instants_read_as_the_times_of_their_micros(conn: duckdb.DuckDBPyConnection) -> None:
    moments = [
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(2026, 11, 25, 0, 30, tzinfo=timezone(timedelta(hours=1))),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ]
    frame = {
        "instant": columns.instants(map(columns.utc_micros, moments)),
        "time": columns.times(moments),
    }
    assert _read(conn, frame) == [(m.astimezone(UTC),) * 2 for m in moments]
    assert _types(conn, frame) == ["TIMESTAMP WITH TIME ZONE"] * 2
    assert _types(conn, {"instant": columns.instants([])}) == ["TIMESTAMP WITH TIME ZONE"]


def test_a_naive_time_is_refused_not_guessed() -> None:
    with pytest.raises(TypeError):
        columns.times([datetime(2026, 1, 1)])


def test_an_integer_past_its_type_is_refused() -> None:
    with pytest.raises(OverflowError):
        columns.ints([2**63])
    with pytest.raises(OverflowError):
        columns.int32s([2**31])


def test_a_column_name_is_quoted(conn: duckdb.DuckDBPyConnection) -> None:
    frame = {'odd "name"': columns.ints([1]), "select": columns.strings(["x"])}
    assert _read(conn, frame) == [(1, "x")]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.one_of(st.none(), _TEXT), _MONEY, _TIMES), max_size=12),
    st.data(),
)
def test_take_keeps_the_chosen_rows_in_order_with_their_types(
    conn: duckdb.DuckDBPyConnection, rows: list[tuple[str | None, Decimal, datetime]], data: Any
) -> None:
    """``columns.take`` (which rows of a frame go to which table): the rows where the
    mask is true, in their order, read back exactly as the same rows built alone; none
    chosen leaves a frame of the same types."""
    chosen = data.draw(st.lists(st.booleans(), min_size=len(rows), max_size=len(rows)))
    frame = {
        "name": columns.strings(r[0] for r in rows),
        "amount": columns.amounts(r[1] for r in rows),
        "time": columns.times(r[2] for r in rows),
    }
    taken = columns.take(frame, np.array(chosen, bool))
    kept = [r for r, keep in zip(rows, chosen, strict=True) if keep]
    assert columns.rows(taken) == len(kept)
    assert _read(conn, taken) == [(name, amount, time) for name, amount, time in kept]
    assert _types(conn, taken) == _types(conn, frame)
