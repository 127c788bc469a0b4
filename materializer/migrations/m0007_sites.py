"""The site of each event (docs/EVENTS.md, "Sites"; docs/SCALING.md, "Many sites").

Every raw table and the open items get a ``site`` column; rows stored before it get the
empty site (events published to the central stream itself). The aggregates that can be
split by site get it as a key column right after their old keys, so their primary keys
change and they are rebuilt from their old rows (all of the empty site):
``sales_by_hour`` (hour, channel, site), ``product_sales_by_hour`` (hour, sku, site) and
``stock_snapshot`` (sku, warehouse, site). Unfiltered reads sum the sites, so every
answer stays what it was. ``site_events`` counts the applied events of each site.
"""

_RAW = (
    "order_events",
    "order_lines",
    "order_cancellations",
    "stock_events",
    "product_events",
    "customer_events",
    "invoice_events",
    "payment_events",
    "invoices",
)
#: Split aggregates: their old key, then the columns that follow it (all NOT NULL).
_SPLIT = {
    "sales_by_hour": (
        "hour, channel",
        (
            "orders",
            "gross_revenue",
            "units",
            "cancelled_orders",
            "cancelled_revenue",
            "cancelled_units",
        ),
    ),
    "product_sales_by_hour": (
        "hour, sku",
        ("units", "revenue", "cancelled_units", "cancelled_revenue"),
    ),
    "stock_snapshot": ("sku, warehouse", ("on_hand", "last_movement_at")),
}


def _with_site(table: str) -> str:
    return (
        f"ALTER TABLE {table} ADD COLUMN site VARCHAR DEFAULT '';\n"
        f"ALTER TABLE {table} ALTER COLUMN site SET NOT NULL;\n"
    )


def _keyed_by_site(table: str, keys: str, values: tuple[str, ...]) -> str:
    # DuckDB cannot change a primary key in place: copy the table with the new column.
    return (
        f"CREATE TABLE {table}_m0007 AS"
        f" SELECT {keys}, ''::VARCHAR AS site, * EXCLUDE ({keys}) FROM {table};\n"
        f"DROP TABLE {table};\n"
        f"ALTER TABLE {table}_m0007 RENAME TO {table};\n"
        f"ALTER TABLE {table} ALTER COLUMN site SET DEFAULT '';\n"
        f"ALTER TABLE {table} ADD PRIMARY KEY ({keys}, site);\n"
        + "".join(f"ALTER TABLE {table} ALTER COLUMN {c} SET NOT NULL;\n" for c in values)
    )


SQL = (
    "".join(_with_site(table) for table in _RAW)
    + "".join(_keyed_by_site(table, *split) for table, split in _SPLIT.items())
    + """
-- Applied events per site (the ``sites`` query); every event so far is the central site's.
CREATE TABLE site_events (
    site VARCHAR PRIMARY KEY,
    events BIGINT NOT NULL,
    last_event_time TIMESTAMPTZ
);
INSERT INTO site_events SELECT '', events_applied, last_event_time FROM pipeline_state
    WHERE events_applied > 0;
"""
)
