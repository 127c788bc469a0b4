"""The site of each event (docs/EVENTS.md, "Sites"; docs/SCALING.md, "Many sites").

Every raw table and the open items get a ``site`` column; rows stored before it get the
empty site (events published to the central stream itself). The aggregates that can be
split by site get it as a key column, so their primary keys change and they are rebuilt
from their old rows (all of the empty site): ``sales_by_hour`` (hour, channel, site),
``product_sales_by_hour`` (hour, sku, site) and ``stock_snapshot`` (sku, warehouse,
site). Unfiltered reads sum the sites, so every answer stays what it was.
``site_events`` counts the applied events of each site.
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
_COLUMNS = "".join(
    f"ALTER TABLE {table} ADD COLUMN site VARCHAR DEFAULT '';\n"
    f"ALTER TABLE {table} ALTER COLUMN site SET NOT NULL;\n"
    for table in _RAW
)

SQL = (
    _COLUMNS
    + """
CREATE TABLE sales_by_hour_m0007 (
    hour TIMESTAMPTZ NOT NULL,
    channel VARCHAR NOT NULL,
    site VARCHAR NOT NULL DEFAULT '',
    orders BIGINT NOT NULL,
    gross_revenue DECIMAL(38, 2) NOT NULL,
    units HUGEINT NOT NULL,
    cancelled_orders BIGINT NOT NULL,
    cancelled_revenue DECIMAL(38, 2) NOT NULL,
    cancelled_units HUGEINT NOT NULL,
    PRIMARY KEY (hour, channel, site)
);
INSERT INTO sales_by_hour_m0007 SELECT hour, channel, '', orders, gross_revenue, units,
    cancelled_orders, cancelled_revenue, cancelled_units FROM sales_by_hour;
DROP TABLE sales_by_hour;
ALTER TABLE sales_by_hour_m0007 RENAME TO sales_by_hour;

CREATE TABLE product_sales_by_hour_m0007 (
    hour TIMESTAMPTZ NOT NULL,
    sku VARCHAR NOT NULL,
    site VARCHAR NOT NULL DEFAULT '',
    units HUGEINT NOT NULL,
    revenue DECIMAL(38, 2) NOT NULL,
    cancelled_units HUGEINT NOT NULL,
    cancelled_revenue DECIMAL(38, 2) NOT NULL,
    PRIMARY KEY (hour, sku, site)
);
INSERT INTO product_sales_by_hour_m0007 SELECT hour, sku, '', units, revenue,
    cancelled_units, cancelled_revenue FROM product_sales_by_hour;
DROP TABLE product_sales_by_hour;
ALTER TABLE product_sales_by_hour_m0007 RENAME TO product_sales_by_hour;

CREATE TABLE stock_snapshot_m0007 (
    sku VARCHAR NOT NULL,
    warehouse VARCHAR NOT NULL,
    site VARCHAR NOT NULL DEFAULT '',
    on_hand HUGEINT NOT NULL,
    last_movement_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (sku, warehouse, site)
);
INSERT INTO stock_snapshot_m0007 SELECT sku, warehouse, '', on_hand, last_movement_at
    FROM stock_snapshot;
DROP TABLE stock_snapshot;
ALTER TABLE stock_snapshot_m0007 RENAME TO stock_snapshot;

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
