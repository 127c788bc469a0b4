"""Catalog: products and customers, the latest update of each by stream order.

Consumes ``product.updated`` and ``customer.updated``. Tables (DDL in
``migrations/m0001_initial.py``): ``product_events``, ``products`` (name, category,
reorder point, unit cost), ``customer_events``, ``customers``. Other aggregates join
these at query time, so a rename or a new reorder point shows everywhere at once.
"""

from __future__ import annotations

from materializer.aggregates.batch import Accepted, Batch, event_table
from materializer.aggregates.columns import amounts, ints, scan, strings, values
from materializer.aggregates.history import History
from pulse_bi.contract import registry

SPEC = registry.CATALOG
#: A batch's updates of a single product or customer (the usual case) are a plain
#: UPDATE with parameters, whose count of rows says whether the key is new, then a
#: plain INSERT if it is: ~1.3 ms each where the upsert (a MERGE) costs 4 to 5 ms in a
#: small batch (docs/BENCHMARKS.md, "Small batches, statement by statement").
#: (table, key column, the data fields it stores besides sequence and updated_at)
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
    if not _one_key(batch, events, skus, _PRODUCT):
        batch_products = values(products)  # noqa: F841 - read by DuckDB below
        # One row per sku (the latest in stream order) before the upsert.
        batch.cur.execute(
            "INSERT INTO products SELECT sku, arg_max(name, sequence), "
            "arg_max(category, sequence), arg_max(reorder_point, sequence), "
            "arg_max(unit_cost, sequence), max(sequence), arg_max(time, sequence) "
            f"FROM {scan(products, 'batch_products')} GROUP BY sku ON CONFLICT DO UPDATE SET "
            "name = excluded.name, category = excluded.category, "
            "reorder_point = excluded.reorder_point, unit_cost = excluded.unit_cost, "
            "sequence = excluded.sequence, updated_at = excluded.updated_at"
        )
    batch.changes.products = True
    batch.changes.skus.extend(skus)
    # Names and reorder points show in top products and stock levels.
    batch.aggregates.update(("sales", "stock"))


def _apply_customers(batch: Batch, events: list[Accepted]) -> None:
    ids = [e.data.customer_id for e in events]
    customers = event_table(events, {"name": strings}, customer_id=strings(ids))
    batch.insert("customer_events", customers)
    if not _one_key(batch, events, ids, _CUSTOMER):
        batch_customers = values(customers)  # noqa: F841 - read by DuckDB below
        batch.cur.execute(
            "INSERT INTO customers SELECT customer_id, arg_max(name, sequence), "
            "max(sequence), arg_max(time, sequence)"
            f" FROM {scan(customers, 'batch_customers')} GROUP BY customer_id "
            "ON CONFLICT DO UPDATE SET name = excluded.name, sequence = excluded.sequence, "
            "updated_at = excluded.updated_at"
        )
    batch.changes.customers.extend(ids)
    # Customer names show in AR aging and overdue invoices.
    batch.aggregates.add("receivables")


def _one_key(
    batch: Batch, events: list[Accepted], keys: list[str], table: tuple[str, str, tuple[str, ...]]
) -> bool:
    """When the batch's events all update one key: its row set to the last event's
    values (stream order: the last update wins), and True; else False (the upsert's)."""
    if keys.count(keys[0]) != len(keys):
        return False
    name, key, fields = table
    last = events[-1]
    params = [*(getattr(last.data, f) for f in fields), last.sequence, last.time, keys[0]]
    columns = [*fields, "sequence", "updated_at"]
    assigned = ", ".join(f"{c} = ?" for c in columns)
    update = f"UPDATE {name} SET {assigned} WHERE {key} = ?"
    (updated,) = batch.cur.execute(update, params).fetchall()[0]
    if not updated:
        marks = ", ".join("?" for _ in params)
        listed = ", ".join([*columns, key])
        batch.cur.execute(f"INSERT INTO {name} ({listed}) VALUES ({marks})", params)
    return True


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
