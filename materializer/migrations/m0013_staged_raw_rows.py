"""A small batch's raw rows go in one table, ``raw_staged``, which a fold moves into the
raw tables.

A small batch of the usual mix wrote eight raw tables (orders, their lines,
cancellations, invoices, payments, stock movements, product and customer updates), each
with a statement of its own (DuckDB's fixed cost, ~0.4 to 0.8 ms) and a share of the
COMMIT: about a quarter of the batch (docs/BENCHMARKS.md, "One table for a small batch's
raw rows"). Each raw table ``<t>`` becomes ``<t>_base``, and ``<t>`` a view of its rows
and of the rows of ``raw_staged`` that name it in ``raw_table``, so every read sees the
same rows as before. A row holds its table's columns and NULL in the others; a CHECK per
table refuses a NULL where that table's column is NOT NULL, inside the batch that
carries it, never at a later fold (as m0010 and m0012 do for the aggregate deltas).
"""

SQL = """
ALTER TABLE order_events RENAME TO order_events_base;
ALTER TABLE order_lines RENAME TO order_lines_base;
ALTER TABLE order_cancellations RENAME TO order_cancellations_base;
ALTER TABLE invoice_events RENAME TO invoice_events_base;
ALTER TABLE payment_events RENAME TO payment_events_base;
ALTER TABLE stock_events RENAME TO stock_events_base;
ALTER TABLE product_events RENAME TO product_events_base;
ALTER TABLE customer_events RENAME TO customer_events_base;

CREATE TABLE raw_staged (
    raw_table VARCHAR NOT NULL CHECK (raw_table IN ('order_events', 'order_lines',
        'order_cancellations', 'invoice_events', 'payment_events', 'stock_events',
        'product_events', 'customer_events')),
    sequence BIGINT,
    event_id VARCHAR,
    time TIMESTAMPTZ,
    site VARCHAR NOT NULL,
    hour TIMESTAMPTZ,
    order_id VARCHAR,
    customer_id VARCHAR,
    channel VARCHAR,
    total_amount DECIMAL(18, 2),
    units BIGINT,
    order_sequence BIGINT,
    line_no INTEGER,
    sku VARCHAR,
    quantity BIGINT,
    unit_price DECIMAL(18, 2),
    reason VARCHAR,
    effect VARCHAR,
    invoice_id VARCHAR,
    amount DECIMAL(18, 2),
    issued_on DATE,
    due_date DATE,
    payment_id VARCHAR,
    warehouse VARCHAR,
    quantity_delta BIGINT,
    name VARCHAR,
    category VARCHAR,
    reorder_point BIGINT,
    unit_cost DECIMAL(18, 2),
    CHECK (raw_table = 'order_lines' OR (sequence IS NOT NULL AND event_id IS NOT NULL
        AND time IS NOT NULL)),
    CHECK (raw_table <> 'order_events' OR (hour IS NOT NULL AND order_id IS NOT NULL
        AND customer_id IS NOT NULL AND channel IS NOT NULL AND total_amount IS NOT NULL
        AND units IS NOT NULL)),
    CHECK (raw_table <> 'order_lines' OR (order_sequence IS NOT NULL
        AND line_no IS NOT NULL AND hour IS NOT NULL AND order_id IS NOT NULL
        AND sku IS NOT NULL AND quantity IS NOT NULL AND unit_price IS NOT NULL)),
    CHECK (raw_table <> 'order_cancellations' OR (order_id IS NOT NULL
        AND reason IS NOT NULL AND effect IS NOT NULL)),
    CHECK (raw_table <> 'invoice_events' OR (invoice_id IS NOT NULL
        AND customer_id IS NOT NULL AND amount IS NOT NULL AND issued_on IS NOT NULL
        AND due_date IS NOT NULL)),
    CHECK (raw_table <> 'payment_events' OR (payment_id IS NOT NULL
        AND invoice_id IS NOT NULL AND amount IS NOT NULL)),
    CHECK (raw_table <> 'stock_events' OR (sku IS NOT NULL AND warehouse IS NOT NULL
        AND quantity_delta IS NOT NULL AND reason IS NOT NULL)),
    CHECK (raw_table <> 'product_events' OR (sku IS NOT NULL AND name IS NOT NULL
        AND category IS NOT NULL AND reorder_point IS NOT NULL AND unit_cost IS NOT NULL)),
    CHECK (raw_table <> 'customer_events' OR (customer_id IS NOT NULL AND name IS NOT NULL))
);

CREATE VIEW order_events AS
SELECT * FROM order_events_base
UNION ALL
SELECT sequence, event_id, time, hour, order_id, customer_id, channel, total_amount, units,
    site
FROM raw_staged WHERE raw_table = 'order_events';

CREATE VIEW order_lines AS
SELECT * FROM order_lines_base
UNION ALL
SELECT order_sequence, line_no, hour, order_id, sku, quantity, unit_price, site
FROM raw_staged WHERE raw_table = 'order_lines';

CREATE VIEW order_cancellations AS
SELECT * FROM order_cancellations_base
UNION ALL
SELECT sequence, event_id, time, order_id, reason, effect, site
FROM raw_staged WHERE raw_table = 'order_cancellations';

CREATE VIEW invoice_events AS
SELECT * FROM invoice_events_base
UNION ALL
SELECT sequence, event_id, time, invoice_id, customer_id, order_id, amount, issued_on,
    due_date, site
FROM raw_staged WHERE raw_table = 'invoice_events';

CREATE VIEW payment_events AS
SELECT * FROM payment_events_base
UNION ALL
SELECT sequence, event_id, time, payment_id, invoice_id, amount, site
FROM raw_staged WHERE raw_table = 'payment_events';

CREATE VIEW stock_events AS
SELECT * FROM stock_events_base
UNION ALL
SELECT sequence, event_id, time, sku, warehouse, quantity_delta, reason, site
FROM raw_staged WHERE raw_table = 'stock_events';

CREATE VIEW product_events AS
SELECT * FROM product_events_base
UNION ALL
SELECT sequence, event_id, time, sku, name, category, reorder_point, unit_cost, site
FROM raw_staged WHERE raw_table = 'product_events';

CREATE VIEW customer_events AS
SELECT * FROM customer_events_base
UNION ALL
SELECT sequence, event_id, time, customer_id, name, site
FROM raw_staged WHERE raw_table = 'customer_events';
"""
