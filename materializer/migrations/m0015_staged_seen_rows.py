"""A small batch's seen event ids and keys no longer cost statements of their own.

Every batch appended to ``seen_events`` (its new event ids) and nearly every one to
``seen_keys`` (an order's, an invoice's id), each append a statement of DuckDB's fixed
cost and a share of the COMMIT: on a slow machine 1.4 ms of a one-order batch's 8.4 ms
(docs/BENCHMARKS.md, "Seen ids and keys without statements of their own"). As m0013 did
for the raw tables, each becomes ``<t>_base`` and a view of it and of ``<t>_staged``:

- a small batch's new event ids are those of its staged raw rows (only applied events
  have raw rows, each one row with its ``event_id``), so ``seen_events_staged`` computes
  them from ``raw_staged`` and nothing more is written;
- its new keys go in ``raw_staged`` with its raw rows, the key's 128-bit hash as two
  64-bit halves in the two BIGINT slots (a half above 2**63 - 1 as the BIGINT of the same
  bits, read back with a mask); ``seen_keys_base`` holds the halves too, and the view
  ``seen_keys`` still reads ``k``.

``raw_staged`` is made again to take key rows: its raw rows are folded first, as m0014
did, and its CHECKs ask a key row for nothing else, and for no ``event_id``, which would
make it an event id of ``seen_events_staged``.
"""

SQL = """
INSERT INTO order_events_base SELECT * FROM order_events_staged ORDER BY sequence;
INSERT INTO order_lines_base SELECT * FROM order_lines_staged ORDER BY order_sequence, line_no;
INSERT INTO order_cancellations_base SELECT * FROM order_cancellations_staged ORDER BY sequence;
INSERT INTO invoice_events_base SELECT * FROM invoice_events_staged ORDER BY sequence;
INSERT INTO payment_events_base SELECT * FROM payment_events_staged ORDER BY sequence;
INSERT INTO stock_events_base SELECT * FROM stock_events_staged ORDER BY sequence;
INSERT INTO product_events_base SELECT * FROM product_events_staged ORDER BY sequence;
INSERT INTO customer_events_base SELECT * FROM customer_events_staged ORDER BY sequence;

DROP VIEW order_events;
DROP VIEW order_lines;
DROP VIEW order_cancellations;
DROP VIEW invoice_events;
DROP VIEW payment_events;
DROP VIEW stock_events;
DROP VIEW product_events;
DROP VIEW customer_events;
DROP VIEW order_events_staged;
DROP VIEW order_lines_staged;
DROP VIEW order_cancellations_staged;
DROP VIEW invoice_events_staged;
DROP VIEW payment_events_staged;
DROP VIEW stock_events_staged;
DROP VIEW product_events_staged;
DROP VIEW customer_events_staged;
DROP TABLE raw_staged;

ALTER TABLE seen_events RENAME TO seen_events_base;
CREATE TABLE seen_keys_base (hi UBIGINT NOT NULL, lo UBIGINT NOT NULL, sequence BIGINT NOT NULL);
INSERT INTO seen_keys_base
SELECT (k >> 64)::UBIGINT, (k & 18446744073709551615)::UBIGINT, sequence FROM seen_keys;
DROP TABLE seen_keys;

CREATE TABLE raw_staged (
    raw_table VARCHAR NOT NULL CHECK (raw_table IN ('order_events', 'order_lines',
        'order_cancellations', 'invoice_events', 'payment_events', 'stock_events',
        'product_events', 'customer_events', 'seen_keys')),
    sequence BIGINT,
    event_id VARCHAR,
    time TIMESTAMPTZ,
    hour TIMESTAMPTZ,
    site VARCHAR,
    text_1 VARCHAR,
    text_2 VARCHAR,
    text_3 VARCHAR,
    int_1 BIGINT,
    int_2 BIGINT,
    amount DECIMAL(18, 2),
    CHECK (raw_table = 'seen_keys' OR (sequence IS NOT NULL
        AND site IS NOT NULL AND text_1 IS NOT NULL AND text_2 IS NOT NULL)),
    CHECK (raw_table IN ('order_lines', 'seen_keys')
        OR (event_id IS NOT NULL AND time IS NOT NULL)),
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
        AND amount IS NOT NULL)),
    CHECK (raw_table <> 'seen_keys' OR (sequence IS NOT NULL AND int_1 IS NOT NULL
        AND int_2 IS NOT NULL AND event_id IS NULL))
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

CREATE VIEW seen_events_staged AS
SELECT md5_number_lower(event_id) AS h FROM raw_staged WHERE event_id IS NOT NULL;

CREATE VIEW seen_keys_staged AS
SELECT (int_1::HUGEINT & 18446744073709551615)::UBIGINT AS hi,
    (int_2::HUGEINT & 18446744073709551615)::UBIGINT AS lo, sequence
FROM raw_staged WHERE raw_table = 'seen_keys';

CREATE VIEW seen_events AS
SELECT * FROM seen_events_base UNION ALL SELECT * FROM seen_events_staged;

CREATE VIEW seen_keys AS
SELECT (hi::UHUGEINT << 64) | lo::UHUGEINT AS k, sequence
FROM (SELECT * FROM seen_keys_base UNION ALL SELECT * FROM seen_keys_staged);
"""
