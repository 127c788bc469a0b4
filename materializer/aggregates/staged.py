"""Raw tables that take a small batch's rows in one table: ``<t>_base`` (the rows folded
so far) and the rows of ``raw_staged`` that name ``<t>``, read through the view ``<t>``
(``migrations/m0013_staged_raw_rows.py``, docs/OPERATIONS.md "Staged raw rows").

A small batch of the usual mix wrote eight raw tables, a statement and a share of the
COMMIT each; its raw rows now go in one INSERT (``Batch.flush``), and ``fold`` moves them
into the bases between batches (``Store.fold_when_due``, ``Store.compact``). A larger
batch appends to the bases themselves: a staged row carries every raw table's columns,
so per row it costs more than its own table's.
"""

from __future__ import annotations

import duckdb

from pulse_bi.contract import registry

#: The table a small batch's raw rows go to; ``raw_table`` names each row's table.
STAGED = "raw_staged"
#: The raw tables kept as base + staged rows: every aggregate's ``raw_tables`` and the
#: orders' lines.
TABLES = (*registry.RAW_TABLES, "order_lines")

#: Staged raw rows at which the store folds them (``Store.fold_due``): at 1,000
#: events/s of the usual mix about every half minute, ~65 ms a fold on a slow machine
#: (docs/BENCHMARKS.md, "One table for a small batch's raw rows"). Reads of a raw table
#: scan at most that many staged rows besides its base.
FOLD_ROWS = 50_000

#: Raw rows a batch stages at most; with more, they go to the bases. DuckDB types an
#: object array (an integer column that some tables lack, filled with None) from a
#: sample of its values, and reads every value of an array this short
#: (``tests/materializer/test_staged.py``).
MAX_ROWS = 1_000


def base(table: str) -> str:
    """The table holding ``table``'s folded rows."""
    return f"{table}_base"


def pending_rows(cur: duckdb.DuckDBPyConnection) -> int:
    """Rows waiting in ``raw_staged`` (at open: a restart keeps them)."""
    row = cur.execute(f"SELECT count(*) FROM {STAGED}").fetchone()
    return int(row[0] or 0) if row else 0


def fold(cur: duckdb.DuckDBPyConnection) -> int:
    """Move the staged rows into their bases, in stream order, and empty ``raw_staged``
    (call inside a transaction); the rows moved."""
    listed = ", ".join(f"'{base(t)}'" for t in TABLES)
    rows = cur.execute(
        "SELECT table_name, string_agg(column_name, ', ' ORDER BY column_index)"
        " FROM duckdb_columns() WHERE database_name = current_database()"
        f" AND schema_name = 'main' AND table_name IN ({listed}) GROUP BY table_name"
    ).fetchall()
    columns = dict(rows)
    for table in TABLES:
        order = "order_sequence, line_no" if table == "order_lines" else "sequence"
        cur.execute(
            f"INSERT INTO {base(table)} SELECT {columns[base(table)]} FROM {STAGED}"
            f" WHERE raw_table = '{table}' ORDER BY {order}"
        )
    row = cur.execute(f"DELETE FROM {STAGED}").fetchone()
    return int(row[0]) if row else 0
