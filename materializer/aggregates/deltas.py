"""Aggregate tables that take appends: ``<name>_base`` (one row per key) and
``<name>_delta`` (each batch's pre-aggregated rows), read through the view ``<name>``
(``migrations/m0008_delta_aggregates.py``, docs/OPERATIONS.md "Aggregate deltas").

A batch appends to the delta: a plain INSERT costs ~1 ms whatever the table holds,
where an ``INSERT … ON CONFLICT`` (a MERGE scanning the whole table) cost 2 to 5 ms and
grew with it. ``compact`` folds every delta into its base in one transaction, between
batches, once the deltas hold ``COMPACT_ROWS`` rows, so reads never fold more than that.
The fold names only the value columns: every other column is the key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Context, localcontext
from typing import Any

import duckdb

from materializer.aggregates.columns import Column, Frame, Kind

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


@dataclass(frozen=True, slots=True)
class Folded:
    """One aggregate table kept as base + delta; ``sums`` add up, ``latest`` keep the max."""

    name: str
    sums: tuple[str, ...]
    latest: tuple[str, ...] = ()
    delta: str = field(init=False)
    base: str = field(init=False)

    def __post_init__(self) -> None:
        #: ``delta``: the table a batch appends to; ``base``: the folded rows, one per
        #: key (a rebuild writes here).
        object.__setattr__(self, "delta", f"{self.name}_delta")
        object.__setattr__(self, "base", f"{self.name}_base")

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


def pending_rows(cur: duckdb.DuckDBPyConnection, tables: tuple[Folded, ...]) -> int:
    """Rows waiting in the deltas (at open: a restart keeps them)."""
    union = " UNION ALL ".join(f"SELECT count(*) AS n FROM {t.delta}" for t in tables)
    row = cur.execute(f"SELECT sum(n) FROM ({union})").fetchone()
    return int(row[0] or 0) if row else 0


def compact(cur: duckdb.DuckDBPyConnection, tables: tuple[Folded, ...]) -> None:
    """Fold every delta into its base and empty it (call inside a transaction)."""
    for table in tables:
        cur.execute(table.fold_sql())
        cur.execute(f"DELETE FROM {table.delta}")
