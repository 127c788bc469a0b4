"""The aggregate deltas and ``settled_invoices`` refuse NULLs as their base tables do.

Made from their base tables with ``CREATE TABLE … AS``, which copies no constraint
(m0008, m0009). A NULL that reached a delta would only fail when the deltas are folded,
before the next batch and outside the batch's own isolation, so every later batch
would stop on it; with the constraint the insert fails inside the batch that carries
the bad row, and that batch is split until the one event is stored as rejected
(docs/EVENTS.md, "Dead letters").
"""

from materializer.migrations.m0007_sites import _SPLIT

#: Every column of each delta (the split aggregates' keys, ``site``, their values), and
#: of ``settled_invoices`` but ``order_id``, which is optional on an invoice.
_COLUMNS = {
    f"{table}_delta": (*keys.split(", "), "site", *values)
    for table, (keys, values) in _SPLIT.items()
} | {
    "settled_invoices": (
        "invoice_id",
        "sequence",
        "customer_id",
        "amount",
        "paid",
        "issued_on",
        "due_date",
        "site",
    )
}

SQL = "".join(
    f"ALTER TABLE {table} ALTER COLUMN {column} SET NOT NULL;\n"
    for table, columns in _COLUMNS.items()
    for column in columns
)
