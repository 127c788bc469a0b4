"""The three aggregate deltas become one table, ``aggregate_deltas``, which a batch appends
to in one statement.

Every table a batch writes costs it a statement of its own (DuckDB's fixed cost, ~0.5 to
1 ms) and a share of its COMMIT; a batch of orders and stock movements wrote the sales,
product sales and stock deltas (m0008) as three (docs/BENCHMARKS.md, "Fewer statements
per small batch"). Each row names the aggregate it belongs to (``aggregate``);
that aggregate's columns are NOT NULL in it, the others' NULL: a CHECK per aggregate
refuses a NULL inside the batch that carries it, as the separate deltas did (m0010).
The views ``sales_by_hour``, ``product_sales_by_hour`` and ``stock_snapshot`` read the
same rows as before; rows waiting to be folded move over.
"""

SQL = """
CREATE TABLE aggregate_deltas (
    aggregate VARCHAR NOT NULL
        CHECK (aggregate IN ('sales_by_hour', 'product_sales_by_hour', 'stock_snapshot')),
    hour TIMESTAMPTZ,
    channel VARCHAR,
    sku VARCHAR,
    warehouse VARCHAR,
    site VARCHAR NOT NULL,
    orders BIGINT,
    gross_revenue DECIMAL(38, 2),
    units HUGEINT,
    cancelled_orders BIGINT,
    cancelled_revenue DECIMAL(38, 2),
    cancelled_units HUGEINT,
    revenue DECIMAL(38, 2),
    on_hand HUGEINT,
    last_movement_at TIMESTAMPTZ,
    CHECK (aggregate <> 'sales_by_hour' OR (hour IS NOT NULL AND channel IS NOT NULL
        AND orders IS NOT NULL AND gross_revenue IS NOT NULL AND units IS NOT NULL
        AND cancelled_orders IS NOT NULL AND cancelled_revenue IS NOT NULL
        AND cancelled_units IS NOT NULL)),
    CHECK (aggregate <> 'product_sales_by_hour' OR (hour IS NOT NULL AND sku IS NOT NULL
        AND units IS NOT NULL AND revenue IS NOT NULL AND cancelled_units IS NOT NULL
        AND cancelled_revenue IS NOT NULL)),
    CHECK (aggregate <> 'stock_snapshot' OR (sku IS NOT NULL AND warehouse IS NOT NULL
        AND on_hand IS NOT NULL AND last_movement_at IS NOT NULL))
);
INSERT INTO aggregate_deltas BY NAME
SELECT 'sales_by_hour' AS aggregate, * FROM sales_by_hour_delta;
INSERT INTO aggregate_deltas BY NAME
SELECT 'product_sales_by_hour' AS aggregate, * FROM product_sales_by_hour_delta;
INSERT INTO aggregate_deltas BY NAME
SELECT 'stock_snapshot' AS aggregate, * FROM stock_snapshot_delta;

DROP VIEW sales_by_hour;
DROP VIEW product_sales_by_hour;
DROP VIEW stock_snapshot;
DROP TABLE sales_by_hour_delta;
DROP TABLE product_sales_by_hour_delta;
DROP TABLE stock_snapshot_delta;

CREATE VIEW sales_by_hour AS
SELECT * FROM sales_by_hour_base
UNION ALL
SELECT hour, channel, site, orders, gross_revenue, units, cancelled_orders,
    cancelled_revenue, cancelled_units
FROM aggregate_deltas WHERE aggregate = 'sales_by_hour';

CREATE VIEW product_sales_by_hour AS
SELECT * FROM product_sales_by_hour_base
UNION ALL
SELECT hour, sku, site, units, revenue, cancelled_units, cancelled_revenue
FROM aggregate_deltas WHERE aggregate = 'product_sales_by_hour';

CREATE VIEW stock_snapshot AS
SELECT * EXCLUDE (on_hand, last_movement_at), sum(on_hand)::HUGEINT AS on_hand,
    max(last_movement_at) AS last_movement_at
FROM (
    SELECT * FROM stock_snapshot_base
    UNION ALL
    SELECT sku, warehouse, site, on_hand, last_movement_at
    FROM aggregate_deltas WHERE aggregate = 'stock_snapshot'
)
GROUP BY ALL;
"""
