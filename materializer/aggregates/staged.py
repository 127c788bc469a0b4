"""Raw tables that take a small batch's rows in one table: ``<t>_base`` (the rows folded
so far) and the rows of ``raw_staged`` that name ``<t>``, which the view ``<t>_staged``
reads as ``<t>``'s columns; the view ``<t>`` is both (``migrations/m0013_staged_raw_rows.py``,
``migrations/m0014_narrow_staged_rows.py``, docs/OPERATIONS.md "Staged raw rows"). The
seen event ids and keys are kept the same way (``SEEN``, ``DERIVED``,
``migrations/m0015_staged_seen_rows.py``).

A small batch of the usual mix wrote eight raw tables, a statement and a share of the
COMMIT each; its raw rows now go in one INSERT (``Batch.flush``, with ``slotted``), and
``fold`` moves them into the bases between batches (``Store.fold_when_due``,
``Store.compact``). A staged row keeps its table's columns in the shared slots that
``SLOTS`` names. A larger batch appends to the bases themselves: a staged row is written
twice, once staged and once folded.
"""

from __future__ import annotations

import duckdb
import numpy as np

from materializer.aggregates.columns import Column, Frame
from pulse_bi.contract import registry

#: The table a small batch's raw rows go to; ``raw_table`` names each row's table.
STAGED = "raw_staged"
#: The seen event ids and keys (``materializer/seen.py``), kept as base + staged rows as
#: the raw tables are (m0015): nearly every batch writes both.
SEEN = ("seen_events", "seen_keys")
#: Tables whose staged rows are not written but read off the raw rows staged with them
#: (``<t>_staged`` computes them): a small batch's new event ids are the ids of its raw
#: rows, since only applied events have raw rows, one each. A batch that writes the
#: bases writes these to their bases too.
DERIVED = frozenset({"seen_events"})
#: The tables kept as base + staged rows: every aggregate's ``raw_tables``, the orders'
#: lines, and ``SEEN``.
TABLES = (*registry.RAW_TABLES, "order_lines", *SEEN)

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


#: Where a staged row keeps each column of its table: the column of ``raw_staged`` that
#: ``<t>_staged`` reads it from (m0014). ``sequence``, ``event_id``, ``time``, ``hour``,
#: ``site`` and ``amount`` keep their names; a table's other strings go in ``text_1`` to
#: ``text_3``, its other integers and its dates in ``int_1`` and ``int_2`` (``slotted``).
#: The self-check holds these to the file: every column of each base, each to a column
#: of ``raw_staged`` (``materializer/selfcheck.py``).
SLOTS: dict[str, dict[str, str]] = {
    "order_events": {
        "sequence": "sequence",
        "event_id": "event_id",
        "time": "time",
        "hour": "hour",
        "order_id": "text_1",
        "customer_id": "text_2",
        "channel": "text_3",
        "total_amount": "amount",
        "units": "int_1",
        "site": "site",
    },
    "order_lines": {
        "order_sequence": "sequence",
        "line_no": "int_1",
        "hour": "hour",
        "order_id": "text_1",
        "sku": "text_2",
        "quantity": "int_2",
        "unit_price": "amount",
        "site": "site",
    },
    "order_cancellations": {
        "sequence": "sequence",
        "event_id": "event_id",
        "time": "time",
        "order_id": "text_1",
        "reason": "text_2",
        "effect": "text_3",
        "site": "site",
    },
    "invoice_events": {
        "sequence": "sequence",
        "event_id": "event_id",
        "time": "time",
        "invoice_id": "text_1",
        "customer_id": "text_2",
        "order_id": "text_3",
        "amount": "amount",
        "issued_on": "int_1",
        "due_date": "int_2",
        "site": "site",
    },
    "payment_events": {
        "sequence": "sequence",
        "event_id": "event_id",
        "time": "time",
        "payment_id": "text_1",
        "invoice_id": "text_2",
        "amount": "amount",
        "site": "site",
    },
    "stock_events": {
        "sequence": "sequence",
        "event_id": "event_id",
        "time": "time",
        "sku": "text_1",
        "warehouse": "text_2",
        "quantity_delta": "int_1",
        "reason": "text_3",
        "site": "site",
    },
    "product_events": {
        "sequence": "sequence",
        "event_id": "event_id",
        "time": "time",
        "sku": "text_1",
        "name": "text_2",
        "category": "text_3",
        "reorder_point": "int_1",
        "unit_cost": "amount",
        "site": "site",
    },
    "customer_events": {
        "sequence": "sequence",
        "event_id": "event_id",
        "time": "time",
        "customer_id": "text_1",
        "name": "text_2",
        "site": "site",
    },
    # The key's hash in two halves: a UBIGINT above 2**63 - 1 is staged as the BIGINT of
    # the same bits (``slotted``), which ``seen_keys_staged`` masks back.
    "seen_keys": {"hi": "int_1", "lo": "int_2", "sequence": "sequence"},
}
#: The slots that hold integers: a DATE goes in one as its days since 1970-01-01.
INT_SLOTS = frozenset({"int_1", "int_2"})


def base(table: str) -> str:
    """The table holding ``table``'s folded rows."""
    return f"{table}_base"


def view(table: str) -> str:
    """The view reading ``table``'s staged rows as its columns."""
    return f"{table}_staged"


def slotted(table: str, frame: Frame) -> Frame:
    """``table``'s rows as staged rows: each column under its slot (``SLOTS``), a date as
    its days and any integer as int64, so that every part of a batch's one INSERT has its
    slots of one type (``deltas.combined`` concatenates them as they are)."""
    slots = SLOTS[table]
    out: dict[str, Column] = {}
    for name, column in frame.items():
        slot = slots[name]
        values = column.values
        if slot in INT_SLOTS:
            if values.dtype.kind == "M":  # midnights (``columns.dates``)
                values = values.astype("datetime64[D]").view(np.int64)
            elif values.dtype == np.uint64:  # a hash: the same bits (``SLOTS``)
                values = values.view(np.int64)
            elif values.dtype.kind in "iu" and values.dtype != np.int64:
                values = values.astype(np.int64)
            column = Column(values, "{}")
        out[slot] = column
    return out


def pending_rows(cur: duckdb.DuckDBPyConnection) -> int:
    """Rows waiting in ``raw_staged`` (at open: a restart keeps them)."""
    row = cur.execute(f"SELECT count(*) FROM {STAGED}").fetchone()
    return int(row[0] or 0) if row else 0


#: How a table's folded rows are ordered in its base (``sequence`` unless named here).
_ORDER = {"order_lines": "ORDER BY order_sequence, line_no", "seen_events": ""}


def fold(cur: duckdb.DuckDBPyConnection) -> int:
    """Move the staged rows into their bases, in stream order, and empty ``raw_staged``
    (call inside a transaction); the rows moved."""
    for table in TABLES:
        order = _ORDER.get(table, "ORDER BY sequence")
        cur.execute(f"INSERT INTO {base(table)} BY NAME SELECT * FROM {view(table)} {order}")
    row = cur.execute(f"DELETE FROM {STAGED}").fetchone()
    return int(row[0]) if row else 0
