"""Stock: movements → on-hand snapshot per (sku, warehouse).

Consumes ``stock.moved`` (``registry.STOCK``). Tables (DDL in
``migrations/m0001_initial.py``, sites in ``m0007_sites.py``): ``stock_events`` (raw
movements) and ``stock_snapshot`` (per sku, warehouse and site: on_hand = Σ
quantity_delta, last_movement_at; reads sum the sites asked for). Low stock
(docs/API.md, ``low_stock``): the latest ``product.updated`` reorder point of the sku is
> 0 and on_hand ≤ it; it is computed at query time so a new reorder point applies at
once.
"""

from __future__ import annotations

from materializer.aggregates.batch import Batch, event_table
from materializer.aggregates.columns import Kind, instants, ints, scan, strings, values
from materializer.aggregates.deltas import GROUP_IN_PYTHON_MAX, Folded, group_in_python
from materializer.aggregates.history import History
from materializer.queries import Cursor, QueryContext, Select, implements
from pulse_bi.contract import registry

SPEC = registry.STOCK

#: The snapshot takes appends (``materializer.aggregates.deltas``).
STOCK_SNAPSHOT = Folded(
    "stock_snapshot",
    keys=("sku", "warehouse", "site"),
    sums=("on_hand",),
    latest=("last_movement_at",),
)
FOLDED = (STOCK_SNAPSHOT,)
#: A small batch's delta rows, grouped in Python (``deltas.group_in_python``).
_DELTA_ROWS: dict[str, Kind] = {
    "sku": strings,
    "warehouse": strings,
    "site": strings,
    "on_hand": ints,  # a batch's sum: at most 256 x 10^9
    "last_movement_at": instants,
}


def probe(batch: Batch) -> list[str]:
    """Stock needs no lookups of earlier keys."""
    return []


def apply(batch: Batch) -> None:
    """Store movements and add them to the snapshot."""
    moves = batch.of_type("stock.moved")
    if not moves:
        return
    batch.aggregates.add(SPEC.name)
    skus = [e.data.sku for e in moves]
    warehouses = [e.data.warehouse for e in moves]
    moved = event_table(
        moves,
        {"quantity_delta": ints, "reason": strings},
        sku=strings(skus),
        warehouse=strings(warehouses),
    )
    batch.insert("stock_events", moved)
    # Grouped by the key first: one delta row per key and batch.
    if len(moves) <= GROUP_IN_PYTHON_MAX:
        rows = (
            (
                (e.data.sku, e.data.warehouse, e.message.site or ""),
                (e.data.quantity_delta, e.micros),
            )
            for e in moves
        )
        batch.append_delta(STOCK_SNAPSHOT, group_in_python(rows, 1, _DELTA_ROWS))
    else:
        batch_moves = values(moved)  # noqa: F841 - read by DuckDB below
        grouped = (
            "SELECT sku, warehouse, site, sum(quantity_delta) AS on_hand,"
            f" max(time) AS last_movement_at FROM {scan(moved, 'batch_moves')} GROUP BY ALL"
        )
        (count,) = batch.cur.execute(STOCK_SNAPSHOT.appended(grouped)).fetchall()[0]
        batch.delta_rows += count
    batch.changes.skus.extend(skus)
    batch.changes.warehouses.extend(warehouses)


#: Key columns of ``stock_snapshot`` (the rebuild groups by them).
SNAPSHOT_KEYS = "sku, warehouse, site"


def rebuild(history: History) -> None:
    """``stock_snapshot`` (its base: one row per key) from every movement: on hand is
    their sum."""
    history.cur.execute(
        f"INSERT INTO {STOCK_SNAPSHOT.base} BY NAME SELECT {SNAPSHOT_KEYS},"
        " sum(quantity_delta) AS on_hand, max(time) AS last_movement_at"
        f" FROM {history.of('stock_events')} GROUP BY {SNAPSHOT_KEYS}"
    )


# Named queries ----------------------------------------------------------------------

# The snapshot holds one row per site: summed over the sites asked for (all by default).
_LEVELS = (
    "SELECT s.sku, s.warehouse, s.on_hand, coalesce(p.reorder_point, 0) AS reorder_point,"
    " coalesce(p.reorder_point, 0) > 0 AND s.on_hand <= p.reorder_point AS low_stock,"
    " p.name, p.category, s.last_movement_at"
    " FROM (SELECT sku, warehouse, sum(on_hand) AS on_hand,"
    " max(last_movement_at) AS last_movement_at FROM stock_snapshot"
    " WHERE (?::VARCHAR IS NULL OR site = ?) GROUP BY sku, warehouse) s"
    " LEFT JOIN products p USING (sku)"
    " WHERE (?::VARCHAR IS NULL OR s.warehouse = ?)"
)


@implements(registry.STOCK_LEVELS)
def stock_levels(cur: Cursor, params: registry.StockFilter, context: QueryContext) -> Select:
    """On hand per sku and warehouse, optionally filtered, by sku then warehouse."""
    where = "AND (?::VARCHAR IS NULL OR s.sku = ?) ORDER BY s.sku, s.warehouse"
    arguments = [*_twice(params.site), *_twice(params.warehouse), *_twice(params.sku)]
    return Select(f"{_LEVELS} {where}", arguments)


@implements(registry.LOW_STOCK)
def low_stock(cur: Cursor, params: registry.WarehouseFilter, context: QueryContext) -> Select:
    """Rows at or below their reorder point, most urgent first."""
    urgent = "AND p.reorder_point > 0 AND s.on_hand <= p.reorder_point ORDER BY"
    order = "s.on_hand - p.reorder_point, s.sku, s.warehouse"
    return Select(f"{_LEVELS} {urgent} {order}", [*_twice(params.site), *_twice(params.warehouse)])


_MOVEMENTS = (
    "SELECT sequence, time, sku, warehouse, quantity_delta, reason FROM stock_events "
    "WHERE (?::VARCHAR IS NULL OR warehouse = ?) AND (?::VARCHAR IS NULL OR sku = ?) "
    "AND (?::VARCHAR IS NULL OR site = ?) ORDER BY sequence DESC"
)


@implements(registry.STOCK_MOVEMENTS)
def stock_movements(cur: Cursor, params: registry.MovementsParams, _: QueryContext) -> Select:
    """Latest movements, newest (highest stream sequence) first."""
    arguments = [*_twice(params.warehouse), *_twice(params.sku), *_twice(params.site)]
    return Select(_MOVEMENTS, arguments)


def _twice(value: str | None) -> list[str | None]:
    # An optional filter `(?::VARCHAR IS NULL OR column = ?)` takes its value twice.
    return [value, value]
