"""Columns the write path hands to DuckDB: numpy arrays, each with the SQL that reads it.

DuckDB reads a dict of one-dimensional numpy arrays held in a local variable by the
variable's name (a replacement scan), as it reads an Arrow table, so the materializer
never loads the Arrow libraries (about 27 MB of RSS, docs/OPERATIONS.md "Memory").
What numpy has no exact type for travels as something DuckDB converts exactly:

- strings and bytes: object arrays of ``str`` and ``bytes`` (or None);
- times: ``datetime64[us]`` of their UTC instant (a TIMESTAMP to DuckDB), read as
  TIMESTAMPTZ with ``timezone('UTC', …)``; dates: ``datetime64[us]`` of their midnight;
- money and other decimals: their decimal strings, cast to the column's DECIMAL (DuckDB
  would type an array of ``Decimal`` objects from a sample of its values).

SQL that reads a frame reads every column through its SQL (``reads``, ``scan``), so the
frame has the same types whether it holds a thousand rows or none (an empty object
array alone has none). An INSERT of a whole frame into a table reads the arrays as they
are (``Batch.insert``): the INSERT casts each to its column's type, which binds faster
than the same casts written out (~0.3 ms less per statement of a small batch).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

#: The instant ``utc_micros`` counts from.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_DAY = EPOCH.toordinal()


class Column(NamedTuple):
    """Values for DuckDB and the SQL that reads them as their type (``{}``: the column)."""

    values: npt.NDArray[Any]
    read: str
    #: For an object array: the SQL that reads it without values to go by (no rows, or a
    #: first one that is None), which ``take`` uses when its rows leave it so.
    cast: str = ""


#: A frame: columns of the same length by name, in the order DuckDB reads them.
Frame = Mapping[str, Column]
#: Builds one kind of column from its values (``strings``, ``times``, ``amounts`` …).
Kind = Callable[[Iterable[Any]], Column]


def _objects(values: Iterable[Any], sql_type: str) -> Column:
    # One item per element, whatever the items are (never a 2-D array), and no pass
    # looking for nested sequences as ``np.array`` makes: ~25 % cheaper per item.
    array = np.fromiter(values, dtype=object)
    # DuckDB types an object array by its values' Python types (str: VARCHAR, bytes:
    # BLOB, date: DATE); the cast is for an array with none to go by. Each cast costs a
    # small batch's statement ~20 us of planning.
    typed = len(array) > 0 and array[0] is not None
    cast = f"CAST({{}} AS {sql_type})"
    return Column(array, "{}" if typed else cast, cast)


def strings(values: Iterable[str | None]) -> Column:
    """VARCHAR (None: NULL)."""
    return _objects(values, "VARCHAR")


def repeated(value: str, count: int) -> Column:
    """VARCHAR: one string ``count`` times."""
    return _objects(itertools.repeat(value, count), "VARCHAR")


def blobs(values: Iterable[bytes]) -> Column:
    """BLOB."""
    return _objects(values, "BLOB")


def dates(values: Iterable[date]) -> Column:
    """DATE, from ``datetime.date`` values (as their midnights: DuckDB converts ``date``
    objects at about twice the cost)."""
    days = np.array([value.toordinal() - _EPOCH_DAY for value in values], dtype=np.int64)
    return Column(days.astype("datetime64[D]").astype("datetime64[us]"), "CAST({} AS DATE)")


def ints(values: Iterable[int]) -> Column:
    """BIGINT (int64)."""
    return Column(np.fromiter(values, dtype=np.int64), "{}")


def int32s(values: Iterable[int]) -> Column:
    """INTEGER (int32)."""
    return Column(np.fromiter(values, dtype=np.int32), "{}")


def uint64s(values: Any) -> Column:
    """UBIGINT, from a uint64 array (hashes)."""
    return Column(np.ascontiguousarray(values, dtype=np.uint64), "{}")


def utc_micros(value: datetime) -> int:
    """An aware datetime as microseconds since the epoch, its UTC instant: exact for
    years 1 to 9999. What the write path keeps of an event's time (``Accepted.micros``):
    its columns, maxima and hours are int arithmetic from then on, where each
    comparison of datetimes with different offsets costs ~0.15 us under the GIL."""
    since = value - EPOCH
    # ~35 % cheaper than ``since // timedelta(microseconds=1)``, and as exact.
    return (since.days * 86_400 + since.seconds) * 1_000_000 + since.microseconds


def from_micros(micros: int) -> datetime:
    """The aware UTC datetime of ``utc_micros``."""
    return EPOCH + timedelta(microseconds=micros)


def instants(micros: Iterable[int]) -> Column:
    """TIMESTAMPTZ, from microseconds since the epoch (``utc_micros``)."""
    array = np.fromiter(micros, dtype=np.int64).view("datetime64[us]")
    return Column(array, "timezone('UTC', {})")


def times(values: Iterable[datetime]) -> Column:
    """TIMESTAMPTZ, from aware datetimes, exact to the microsecond (years 1 to 9999)."""
    return instants(map(utc_micros, values))


def decimals(sql_type: str) -> Kind:
    """A kind of column for ``Decimal`` (or int) values: DECIMAL(``sql_type``), exact."""
    read = f"CAST({{}} AS {sql_type})"

    def build(values: Iterable[Any]) -> Column:
        strings = np.array([str(value) for value in values], dtype=object)
        return Column(strings, read)

    build.__name__ = f"decimals({sql_type})"
    return build


#: Money as the contract has it: DECIMAL(18,2) (docs/EVENTS.md, "Limits").
amounts = decimals("DECIMAL(18,2)")
#: Sums of money: DECIMAL(38,2), as the tables hold them (migrations/m0003_wide_sums.py).
sums = decimals("DECIMAL(38,2)")


def reads(frame: Frame) -> str:
    """The select list that reads ``frame``'s columns as their types, by their names."""
    return ", ".join(
        f"{c.read.format(_quoted(name))} AS {_quoted(name)}" for name, c in frame.items()
    )


def scan(frame: Frame, name: str) -> str:
    """SQL reading ``frame`` as a table of its types, from ``values(frame)`` held in the
    caller's local variable ``name``: DuckDB finds it there by name (a replacement scan),
    which costs no catalog write, where a registered view or a relation costs ~0.2 ms."""
    return f"(SELECT {reads(frame)} FROM {name})"


def values(frame: Frame) -> dict[str, npt.NDArray[Any]]:
    """What DuckDB scans: the arrays by name."""
    return {name: column.values for name, column in frame.items()}


def take(frame: Frame, chosen: npt.NDArray[np.bool_]) -> Frame:
    """The frame's rows where ``chosen`` (a bool mask) is true, with their types."""
    taken: dict[str, Column] = {}
    for name, column in frame.items():
        kept = column.values[chosen]
        untyped = column.cast and (len(kept) == 0 or kept[0] is None)
        taken[name] = column._replace(values=kept, read=column.cast if untyped else column.read)
    return taken


def rows(frame: Frame) -> int:
    """Rows in the frame."""
    return len(next(iter(frame.values())).values) if frame else 0


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
