"""Additive aggregates take appends: ``<table>_base`` + ``<table>_delta``, read as ``<table>``.

``INSERT … ON CONFLICT`` is planned as a MERGE that scans the whole target table: a
fixed 2 to 5 ms per statement and batch, growing with the table. Each batch now appends
its pre-aggregated rows to ``<table>_delta`` (no key, a plain append), and the store
folds the deltas into ``<table>_base`` (one row per key) in one transaction once they
hold ``materializer.aggregates.deltas.COMPACT_ROWS`` rows (docs/OPERATIONS.md,
"Aggregate deltas").

``<table>`` becomes a view over both, so every read keeps its SQL: the sales tables are
only ever read summed, so their view is a plain union (a key may show in several rows);
``stock_snapshot`` is read row by row, so its view folds (sum of ``on_hand``, latest
``last_movement_at``) by every other column, whatever the key columns are.
"""

SQL = """
ALTER TABLE sales_by_hour RENAME TO sales_by_hour_base;
CREATE TABLE sales_by_hour_delta AS SELECT * FROM sales_by_hour_base LIMIT 0;
CREATE VIEW sales_by_hour AS
SELECT * FROM sales_by_hour_base UNION ALL SELECT * FROM sales_by_hour_delta;

ALTER TABLE product_sales_by_hour RENAME TO product_sales_by_hour_base;
CREATE TABLE product_sales_by_hour_delta AS SELECT * FROM product_sales_by_hour_base LIMIT 0;
CREATE VIEW product_sales_by_hour AS
SELECT * FROM product_sales_by_hour_base UNION ALL SELECT * FROM product_sales_by_hour_delta;

ALTER TABLE stock_snapshot RENAME TO stock_snapshot_base;
CREATE TABLE stock_snapshot_delta AS SELECT * FROM stock_snapshot_base LIMIT 0;
CREATE VIEW stock_snapshot AS
SELECT * EXCLUDE (on_hand, last_movement_at), sum(on_hand)::HUGEINT AS on_hand,
    max(last_movement_at) AS last_movement_at
FROM (SELECT * FROM stock_snapshot_base UNION ALL SELECT * FROM stock_snapshot_delta)
GROUP BY ALL;
"""
