"""Aggregate tables that take appends: ``<name>_base`` (one row per key) and the
aggregate's rows of ``aggregate_deltas`` (each batch's pre-aggregated rows, every folded
aggregate's in one table), read through the view ``<name>``
(``migrations/m0008_delta_aggregates.py``, ``m0012_one_delta_table.py``,
docs/OPERATIONS.md "Aggregate deltas").

A batch appends to the deltas: a plain INSERT costs ~1 ms whatever the table holds,
where an ``INSERT … ON CONFLICT`` (a MERGE scanning the whole table) cost 2 to 5 ms and
grew with it; and a small batch's rows of every aggregate go in one INSERT
(``combined``), since each table a batch writes costs it a statement and a share of its
COMMIT. ``compact`` folds the deltas into their bases in one transaction, between
batches, once they hold ``COMPACT_ROWS`` rows, so reads never fold more than that.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Context, localcontext
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt

from materializer.aggregates.columns import Column, Frame, Kind, rows, values

#: Delta rows (all tables together) at which the store folds them into the bases:
#: ~10 ms per fold of 20,000 rows, and at most that many extra rows per read.
COMPACT_ROWS = 20_000

#: A batch's rows for a delta are grouped by key in Python up to this many rows, and by
#: DuckDB above: DuckDB's hash aggregate costs ~0.5 ms more than a scan however few rows,
#: which every small batch (~25 events at 1,000 events/s) paid three times, and
#: Python's cost grows with the rows (docs/BENCHMARKS.md, "On a quiet machine, and small
#: batches grouped in Python").
GROUP_IN_PYTHON_MAX = 256

#: Sums in Python are exact: the largest (a line's quantity x unit price, ~10^25, added
#: up) pass the 28 digits of Python's default decimal context (docs/EVENTS.md, "Limits").
_EXACT = Context(prec=80)


#: The table every folded aggregate's batches append to; each row names its aggregate
#: in ``aggregate``, and holds NULL in the other aggregates' columns (m0012).
DELTAS = "aggregate_deltas"


@dataclass(frozen=True, slots=True)
class Folded:
    """One aggregate table kept as base + delta: ``keys`` name a row, ``sums`` add up,
    ``latest`` keep the max; ``nullable``: the columns of ``latest`` a delta row may
    leave NULL (the maxima skip them), every other column is NOT NULL in it.

    ``slots``: (column, where its delta rows keep it), for an aggregate whose rows use
    other aggregates' columns of ``DELTAS`` (a column a row leaves NULL costs the WAL its
    full width: m0016); the SQL of a constant for a key that is always the same.
    """

    name: str
    keys: tuple[str, ...]
    sums: tuple[str, ...]
    latest: tuple[str, ...] = ()
    nullable: tuple[str, ...] = ()
    slots: tuple[tuple[str, str], ...] = ()
    delta: str = field(init=False)
    base: str = field(init=False)

    def __post_init__(self) -> None:
        #: ``delta``: the aggregate's rows of ``DELTAS`` with its columns (a subquery);
        #: ``base``: the folded rows, one per key (a rebuild writes here).
        columns = ", ".join(
            name if self.slot(name) == name else f"{self.slot(name)} AS {name}"
            for name in (*self.keys, *self.sums, *self.latest)
        )
        delta = f"(SELECT {columns} FROM {DELTAS} WHERE aggregate = '{self.name}')"
        object.__setattr__(self, "delta", delta)
        object.__setattr__(self, "base", f"{self.name}_base")

    def slot(self, column: str) -> str:
        """Where the delta rows keep ``column`` (``slots``; its own name by default)."""
        for name, slot in self.slots:
            if name == column:
                return slot
        return column

    def slotted(self, frame: Frame) -> Frame:
        """``frame``'s columns under their slots, as ``DELTAS`` takes them."""
        if not self.slots:
            return frame
        return {self.slot(name): column for name, column in frame.items()}

    def appended(self, select: str) -> str:
        """An INSERT of ``select``'s rows (the aggregate's columns, by name) into the
        deltas; its RETURNING may follow. For an aggregate without ``slots``."""
        if self.slots:
            raise ValueError(f"{self.name}: rows in slots are appended by Batch.append_delta")
        return f"INSERT INTO {DELTAS} BY NAME SELECT '{self.name}' AS aggregate, * FROM ({select})"

    def grouped(self, source: str) -> str:
        """``source``'s rows folded to one per key: sums added up, ``latest`` the max."""
        values = ", ".join((*self.sums, *self.latest))
        folded = ", ".join(
            [f"sum({c}) AS {c}" for c in self.sums] + [f"max({c}) AS {c}" for c in self.latest]
        )
        return f"SELECT * EXCLUDE ({values}), {folded} FROM {source} GROUP BY ALL"

    def content_sql(self) -> str:
        """What the table holds, one row per key, however much is folded yet."""
        parts = f"(SELECT * FROM {self.base} UNION ALL BY NAME SELECT * FROM {self.delta})"
        return self.grouped(parts)

    def fold_sql(self) -> str:
        """Add the delta's rows to the base, key by key (the key: every other column)."""
        base = self.base
        updates = ", ".join(
            [f"{c} = {base}.{c} + excluded.{c}" for c in self.sums]
            + [f"{c} = greatest({base}.{c}, excluded.{c})" for c in self.latest]
        )
        return (
            f"INSERT INTO {base} BY NAME {self.grouped(self.delta)}"
            f" ON CONFLICT DO UPDATE SET {updates}"
        )


def group_in_python(
    rows: Iterable[tuple[tuple[Any, ...], tuple[Any, ...]]], sums: int, kinds: Mapping[str, Kind]
) -> Frame:
    """``(key, values)`` rows folded to one per key, as a frame of these columns (the
    key's, then the values'; ``materializer.aggregates.columns``): the first ``sums``
    values are added up, the others keep their maximum, as ``Folded.grouped`` does in
    SQL."""
    groups: dict[tuple[Any, ...], list[Any]] = {}
    with localcontext(_EXACT):
        for key, values in rows:
            total = groups.get(key)
            if total is None:
                groups[key] = list(values)
                continue
            for i, value in enumerate(values):
                total[i] = total[i] + value if i < sums else max(total[i], value)
    columns = list(zip(*(key + tuple(values) for key, values in groups.items()), strict=True))
    if not columns:
        columns = [() for _ in kinds]
    frame: dict[str, Column] = {
        name: kind(values) for (name, kind), values in zip(kinds.items(), columns, strict=True)
    }
    return frame


def combined(parts: Iterable[tuple[str, Frame]], label: str) -> dict[str, npt.NDArray[Any]]:
    """Several tables' rows as the arrays of one INSERT into a table that holds them all
    (``DELTAS``, ``staged.STAGED``): each column of any part, with NULL (None, or NaT for
    times) in the rows of the parts without it, and ``label`` naming each row's part. A
    column of the same numpy type in every part stays of it; one missing from a part, or
    of different types, becomes an object array of the same values (Python ints are
    exact), which the INSERT casts to the column's type as it does a part's own arrays
    (``materializer.aggregates.columns``)."""
    arrayed = [(name, values(frame), rows(frame)) for name, frame in parts]
    counts = [count for _, _, count in arrayed]
    arrays: dict[str, npt.NDArray[Any]] = {
        label: np.repeat(np.array([name for name, _, _ in arrayed], object), counts)
    }
    ends = np.cumsum(counts).tolist()
    spans = [
        (frame, end - count, end) for (_, frame, count), end in zip(arrayed, ends, strict=True)
    ]
    names = dict.fromkeys(column for _, frame, _ in arrayed for column in frame)
    for column in names:
        present = [frame[column] for _, frame, _ in arrayed if column in frame]
        kinds = {array.dtype for array in present}
        if len(present) == len(arrayed) and len(kinds) == 1:
            arrays[column] = np.concatenate(present)
            continue
        # Filled part by part in place: no array per part converted, then copied again.
        kind = kinds.pop() if len(kinds) == 1 else None
        if kind is not None and kind.kind == "M":
            filled = np.full(sum(counts), np.datetime64("NaT"), kind)
        else:
            filled = np.full(sum(counts), None, object)
        for frame, first, end in spans:
            if column in frame:
                filled[first:end] = frame[column]
        arrays[column] = filled
    return arrays


def pending_rows(cur: duckdb.DuckDBPyConnection, tables: tuple[Folded, ...]) -> int:
    """Rows waiting in the deltas (at open: a restart keeps them)."""
    row = cur.execute(f"SELECT count(*) FROM {DELTAS} WHERE {_of(tables)}").fetchone()
    return int(row[0] or 0) if row else 0


def compact(cur: duckdb.DuckDBPyConnection, tables: tuple[Folded, ...]) -> None:
    """Fold the deltas of ``tables`` into their bases and empty them (call inside a
    transaction)."""
    for table in tables:
        cur.execute(table.fold_sql())
    cur.execute(f"DELETE FROM {DELTAS} WHERE {_of(tables)}")


def _of(tables: tuple[Folded, ...]) -> str:
    """The rows of ``DELTAS`` that belong to ``tables``."""
    return f"aggregate IN ({', '.join(repr(t.name) for t in tables)})"
