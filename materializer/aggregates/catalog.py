"""Catalog: products and customers, the latest update of each by stream order.

Consumes ``product.updated`` and ``customer.updated``. Tables (DDL in
``migrations/m0001_initial.py``): ``product_events``, ``products`` (name, category,
reorder point, unit cost), ``customer_events``, ``customers``. Other aggregates join
these at query time, so a rename or a new reorder point shows everywhere at once.
"""

from __future__ import annotations

import numpy as np

from materializer.aggregates.batch import Accepted, Batch, event_table
from materializer.aggregates.columns import Frame, amounts, ints, strings, take
from materializer.aggregates.history import History
from pulse_bi.contract import registry

SPEC = registry.CATALOG
#: What each catalog table keeps of its key's last update in stream order: (table, key
#: column, the data fields it stores besides ``sequence`` and ``updated_at``).
_PRODUCT = ("products", "sku", ("name", "category", "reorder_point", "unit_cost"))
_CUSTOMER = ("customers", "customer_id", ("name",))


def probe(batch: Batch) -> list[str]:
    """The catalog needs no lookups of earlier keys."""
    return []


def apply(batch: Batch) -> None:
    """Store product and customer updates; the highest sequence per key wins."""
    products = batch.of_type("product.updated")
    if products:
        _apply_products(batch, products)
    customers = batch.of_type("customer.updated")
    if customers:
        _apply_customers(batch, customers)


def _apply_products(batch: Batch, events: list[Accepted]) -> None:
    skus = [e.data.sku for e in events]
    products = event_table(
        events,
        {"name": strings, "category": strings, "reorder_point": ints},
        sku=strings(skus),
        unit_cost=amounts(e.data.unit_cost for e in events),
    )
    batch.insert("product_events", products)
    _store_latest(batch, events, skus, products, _PRODUCT)
    batch.changes.products = True
    batch.changes.skus.extend(skus)
    # Names and reorder points show in top products and stock levels.
    batch.aggregates.update(("sales", "stock"))


def _apply_customers(batch: Batch, events: list[Accepted]) -> None:
    ids = [e.data.customer_id for e in events]
    customers = event_table(events, {"name": strings}, customer_id=strings(ids))
    batch.insert("customer_events", customers)
    _store_latest(batch, events, ids, customers, _CUSTOMER)
    batch.changes.customers.extend(ids)
    # Customer names show in AR aging and overdue invoices.
    batch.aggregates.add("receivables")


def _store_latest(
    batch: Batch,
    events: list[Accepted],
    keys: list[str],
    frame: Frame,
    table: tuple[str, str, tuple[str, ...]],
) -> None:
    """Set each key's row of ``table`` to its last update in stream order.

    A batch whose events all update one key (the usual case) runs a plain UPDATE with
    parameters, whose count of rows says whether the key is new, then a plain INSERT if
    it is: ~1.1-1.5 ms each, where the upsert (a MERGE) costs 4 to 6 ms in a small batch
    (docs/BENCHMARKS.md, "Small batches, statement by statement"). Several keys: their
    rows are deleted and each key's last update inserted.
    """
    name, key, fields = table
    columns = [*fields, "sequence", "updated_at"]
    if keys.count(keys[0]) == len(keys):
        last = events[-1]  # stream order: the last update wins
        params = [*(getattr(last.data, f) for f in fields), last.sequence, last.time, keys[0]]
        assigned = ", ".join(f"{c} = ?" for c in columns)
        update = f"UPDATE {name} SET {assigned} WHERE {key} = ?"
        # The key's row is an earlier batch's, or new: nothing queued touches the table.
        (updated,) = batch.earlier.execute(update, params).fetchall()[0]
        if not updated:
            marks = ", ".join("?" for _ in params)
            listed = ", ".join([*columns, key])
            batch.earlier.execute(f"INSERT INTO {name} ({listed}) VALUES ({marks})", params)
        return
    # Several keys: each key's last update replaces its row, a DELETE and a plain INSERT
    # (~3 ms together, where the upsert of the rows grouped by key cost ~8 ms).
    latest = {k: i for i, k in enumerate(keys)}  # each key's last update
    chosen = np.zeros(len(keys), bool)
    chosen[list(latest.values())] = True
    rows = {
        key: frame[key],
        **{f: frame[f] for f in fields},
        "sequence": frame["sequence"],
        "updated_at": frame["time"],
    }
    batch.earlier.execute(  # earlier batches' rows; the new ones wait in the queue
        f"DELETE FROM {name} WHERE {key} IN (SELECT unnest(?::VARCHAR[]))", [list(latest)]
    )
    batch.insert(name, take(rows, chosen))


#: Key columns of ``products`` and ``customers`` (the rebuild groups by them).
PRODUCT_KEYS = "sku"
CUSTOMER_KEYS = "customer_id"


def rebuild(history: History) -> None:
    """``products`` and ``customers`` from every update: the highest sequence per key."""
    history.cur.execute(
        f"INSERT INTO products BY NAME SELECT {PRODUCT_KEYS}, arg_max(name, sequence) AS name,"
        " arg_max(category, sequence) AS category,"
        " arg_max(reorder_point, sequence) AS reorder_point,"
        " arg_max(unit_cost, sequence) AS unit_cost, max(sequence) AS sequence,"
        f" arg_max(time, sequence) AS updated_at FROM {history.of('product_events')}"
        f" GROUP BY {PRODUCT_KEYS}"
    )
    history.cur.execute(
        f"INSERT INTO customers BY NAME SELECT {CUSTOMER_KEYS}, arg_max(name, sequence) AS name,"
        " max(sequence) AS sequence, arg_max(time, sequence) AS updated_at"
        f" FROM {history.of('customer_events')} GROUP BY {CUSTOMER_KEYS}"
    )
