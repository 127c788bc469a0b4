"""A staged raw row holds its table's columns in shared typed slots: twelve columns
instead of m0013's twenty-nine.

m0013 gave ``raw_staged`` every raw table's columns, so each row carried some twenty NULLs,
and DuckDB writes each one to the WAL: a small batch's raw rows cost ~60 % more WAL bytes
than the raw tables' own rows, and the materializer checkpointed as much more often
(docs/BENCHMARKS.md, "Narrow staged raw rows"). A row now holds ``sequence``,
``event_id``, ``time``, ``hour``, ``site`` and ``amount`` under their own names, and its
table's other columns in three VARCHAR slots and two BIGINT slots, which a view per table,
``<t>_staged``, names back: a line's ``line_no`` is an INTEGER again, an invoice's two
dates are days since 1970-01-01. The view ``<t>`` is its base and ``<t>_staged``; the fold
moves ``<t>_staged`` into the base (``materializer/aggregates/staged.py``, which writes
the slots). Rows m0013 left staged are folded first. The CHECKs keep each table's NOT
NULL columns, as m0013's did.
"""

SQL = """
INSERT INTO order_events_base
SELECT sequence, event_id, time, hour, order_id, customer_id, channel, total_amount,
    units, site
FROM raw_staged WHERE raw_table = 'order_events' ORDER BY sequence;
INSERT INTO order_lines_base
SELECT order_sequence, line_no, hour, order_id, sku, quantity, unit_price, site
FROM raw_staged WHERE raw_table = 'order_lines' ORDER BY order_sequence, line_no;
INSERT INTO order_cancellations_base
SELECT sequence, event_id, time, order_id, reason, effect, site
FROM raw_staged WHERE raw_table = 'order_cancellations' ORDER BY sequence;
INSERT INTO invoice_events_base
SELECT sequence, event_id, time, invoice_id, customer_id, order_id, amount, issued_on,
    due_date, site
FROM raw_staged WHERE raw_table = 'invoice_events' ORDER BY sequence;
INSERT INTO payment_events_base
SELECT sequence, event_id, time, payment_id, invoice_id, amount, site
FROM raw_staged WHERE raw_table = 'payment_events' ORDER BY sequence;
INSERT INTO stock_events_base
SELECT sequence, event_id, time, sku, warehouse, quantity_delta, reason, site
FROM raw_staged WHERE raw_table = 'stock_events' ORDER BY sequence;
INSERT INTO product_events_base
SELECT sequence, event_id, time, sku, name, category, reorder_point, unit_cost, site
FROM raw_staged WHERE raw_table = 'product_events' ORDER BY sequence;
INSERT INTO customer_events_base
SELECT sequence, event_id, time, customer_id, name, site
FROM raw_staged WHERE raw_table = 'customer_events' ORDER BY sequence;

DROP VIEW order_events;
DROP VIEW order_lines;
DROP VIEW order_cancellations;
DROP VIEW invoice_events;
DROP VIEW payment_events;
DROP VIEW stock_events;
DROP VIEW product_events;
DROP VIEW customer_events;
DROP TABLE raw_staged;

CREATE TABLE raw_staged (
    raw_table VARCHAR NOT NULL CHECK (raw_table IN ('order_events', 'order_lines',
        'order_cancellations', 'invoice_events', 'payment_events', 'stock_events',
        'product_events', 'customer_events')),
    sequence BIGINT NOT NULL,
    event_id VARCHAR,
    time TIMESTAMPTZ,
    hour TIMESTAMPTZ,
    site VARCHAR NOT NULL,
    text_1 VARCHAR NOT NULL,
    text_2 VARCHAR NOT NULL,
    text_3 VARCHAR,
    int_1 BIGINT,
    int_2 BIGINT,
    amount DECIMAL(18, 2),
    CHECK (raw_table = 'order_lines' OR (event_id IS NOT NULL AND time IS NOT NULL)),
    CHECK (raw_table <> 'order_events' OR (hour IS NOT NULL AND text_3 IS NOT NULL
        AND int_1 IS NOT NULL AND amount IS NOT NULL)),
    CHECK (raw_table <> 'order_lines' OR (hour IS NOT NULL AND int_1 IS NOT NULL
        AND int_2 IS NOT NULL AND amount IS NOT NULL)),
    CHECK (raw_table <> 'order_cancellations' OR text_3 IS NOT NULL),
    CHECK (raw_table <> 'invoice_events' OR (int_1 IS NOT NULL AND int_2 IS NOT NULL
        AND amount IS NOT NULL)),
    CHECK (raw_table <> 'payment_events' OR amount IS NOT NULL),
    CHECK (raw_table <> 'stock_events' OR (text_3 IS NOT NULL AND int_1 IS NOT NULL)),
    CHECK (raw_table <> 'product_events' OR (text_3 IS NOT NULL AND int_1 IS NOT NULL
        AND amount IS NOT NULL))
);

CREATE VIEW order_events_staged AS
SELECT sequence, event_id, time, hour, text_1 AS order_id, text_2 AS customer_id,
    text_3 AS channel, amount AS total_amount, int_1 AS units, site
FROM raw_staged WHERE raw_table = 'order_events';

CREATE VIEW order_lines_staged AS
SELECT sequence AS order_sequence, CAST(int_1 AS INTEGER) AS line_no, hour,
    text_1 AS order_id, text_2 AS sku, int_2 AS quantity, amount AS unit_price, site
FROM raw_staged WHERE raw_table = 'order_lines';

CREATE VIEW order_cancellations_staged AS
SELECT sequence, event_id, time, text_1 AS order_id, text_2 AS reason, text_3 AS effect,
    site
FROM raw_staged WHERE raw_table = 'order_cancellations';

CREATE VIEW invoice_events_staged AS
SELECT sequence, event_id, time, text_1 AS invoice_id, text_2 AS customer_id,
    text_3 AS order_id, amount, DATE '1970-01-01' + CAST(int_1 AS INTEGER) AS issued_on,
    DATE '1970-01-01' + CAST(int_2 AS INTEGER) AS due_date, site
FROM raw_staged WHERE raw_table = 'invoice_events';

CREATE VIEW payment_events_staged AS
SELECT sequence, event_id, time, text_1 AS payment_id, text_2 AS invoice_id, amount,
    site
FROM raw_staged WHERE raw_table = 'payment_events';

CREATE VIEW stock_events_staged AS
SELECT sequence, event_id, time, text_1 AS sku, text_2 AS warehouse,
    int_1 AS quantity_delta, text_3 AS reason, site
FROM raw_staged WHERE raw_table = 'stock_events';

CREATE VIEW product_events_staged AS
SELECT sequence, event_id, time, text_1 AS sku, text_2 AS name, text_3 AS category,
    int_1 AS reorder_point, amount AS unit_cost, site
FROM raw_staged WHERE raw_table = 'product_events';

CREATE VIEW customer_events_staged AS
SELECT sequence, event_id, time, text_1 AS customer_id, text_2 AS name, site
FROM raw_staged WHERE raw_table = 'customer_events';

CREATE VIEW order_events AS
SELECT * FROM order_events_base UNION ALL SELECT * FROM order_events_staged;

CREATE VIEW order_lines AS
SELECT * FROM order_lines_base UNION ALL SELECT * FROM order_lines_staged;

CREATE VIEW order_cancellations AS
SELECT * FROM order_cancellations_base UNION ALL SELECT * FROM order_cancellations_staged;

CREATE VIEW invoice_events AS
SELECT * FROM invoice_events_base UNION ALL SELECT * FROM invoice_events_staged;

CREATE VIEW payment_events AS
SELECT * FROM payment_events_base UNION ALL SELECT * FROM payment_events_staged;

CREATE VIEW stock_events AS
SELECT * FROM stock_events_base UNION ALL SELECT * FROM stock_events_staged;

CREATE VIEW product_events AS
SELECT * FROM product_events_base UNION ALL SELECT * FROM product_events_staged;

CREATE VIEW customer_events AS
SELECT * FROM customer_events_base UNION ALL SELECT * FROM customer_events_staged;
"""
