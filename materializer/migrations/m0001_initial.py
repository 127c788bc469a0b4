"""Initial schema: pipeline state, seen keys, raw event tables and aggregates."""

SQL = """
-- Exactly-once bookkeeping, written in the same transaction as the data of a batch.
CREATE TABLE pipeline_state (
    id INTEGER PRIMARY KEY,
    last_sequence BIGINT NOT NULL,
    events_applied BIGINT NOT NULL,
    events_rejected BIGINT NOT NULL,
    events_duplicate BIGINT NOT NULL,
    batches BIGINT NOT NULL,
    last_event_time TIMESTAMPTZ,
    last_batch_at TIMESTAMPTZ
);
INSERT INTO pipeline_state VALUES (1, 0, 0, 0, 0, 0, NULL, NULL);

-- md5 of 'e:<event id>', 'o:<order id>', 'c:<cancelled order id>', 'i:<invoice id>'
-- with the stream sequence of the event that created the key. No index on purpose:
-- an ART index costs ~60 bytes per key in memory; one hash join per batch is cheaper.
CREATE TABLE seen_keys (k UHUGEINT NOT NULL, sequence BIGINT NOT NULL);

CREATE TABLE rejected_events (
    sequence BIGINT NOT NULL,
    subject VARCHAR NOT NULL,
    event_id VARCHAR,
    event_type VARCHAR,
    reason VARCHAR NOT NULL,
    raw BLOB NOT NULL,
    received_at TIMESTAMPTZ NOT NULL
);

-- Sales
CREATE TABLE order_events (
    sequence BIGINT NOT NULL,
    event_id VARCHAR NOT NULL,
    time TIMESTAMPTZ NOT NULL,
    hour TIMESTAMPTZ NOT NULL,
    order_id VARCHAR NOT NULL,
    customer_id VARCHAR NOT NULL,
    channel VARCHAR NOT NULL,
    total_amount DECIMAL(18, 2) NOT NULL,
    units BIGINT NOT NULL
);
CREATE TABLE order_lines (
    order_sequence BIGINT NOT NULL,
    line_no INTEGER NOT NULL,
    hour TIMESTAMPTZ NOT NULL,
    order_id VARCHAR NOT NULL,
    sku VARCHAR NOT NULL,
    quantity BIGINT NOT NULL,
    unit_price DECIMAL(18, 2) NOT NULL
);
-- effect: 'applied', 'pending' (order not seen yet) or 'repeat' (already cancelled)
CREATE TABLE order_cancellations (
    sequence BIGINT NOT NULL,
    event_id VARCHAR NOT NULL,
    time TIMESTAMPTZ NOT NULL,
    order_id VARCHAR NOT NULL,
    reason VARCHAR NOT NULL,
    effect VARCHAR NOT NULL
);
CREATE TABLE pending_cancellations (order_id VARCHAR NOT NULL, sequence BIGINT NOT NULL);
CREATE TABLE sales_by_hour (
    hour TIMESTAMPTZ NOT NULL,
    channel VARCHAR NOT NULL,
    orders BIGINT NOT NULL,
    gross_revenue DECIMAL(18, 2) NOT NULL,
    units BIGINT NOT NULL,
    cancelled_orders BIGINT NOT NULL,
    cancelled_revenue DECIMAL(18, 2) NOT NULL,
    cancelled_units BIGINT NOT NULL,
    PRIMARY KEY (hour, channel)
);
CREATE TABLE product_sales_by_hour (
    hour TIMESTAMPTZ NOT NULL,
    sku VARCHAR NOT NULL,
    units BIGINT NOT NULL,
    revenue DECIMAL(18, 2) NOT NULL,
    cancelled_units BIGINT NOT NULL,
    cancelled_revenue DECIMAL(18, 2) NOT NULL,
    PRIMARY KEY (hour, sku)
);

-- Stock
CREATE TABLE stock_events (
    sequence BIGINT NOT NULL,
    event_id VARCHAR NOT NULL,
    time TIMESTAMPTZ NOT NULL,
    sku VARCHAR NOT NULL,
    warehouse VARCHAR NOT NULL,
    quantity_delta BIGINT NOT NULL,
    reason VARCHAR NOT NULL
);
CREATE TABLE stock_snapshot (
    sku VARCHAR NOT NULL,
    warehouse VARCHAR NOT NULL,
    on_hand BIGINT NOT NULL,
    last_movement_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (sku, warehouse)
);

-- Catalog
CREATE TABLE product_events (
    sequence BIGINT NOT NULL,
    event_id VARCHAR NOT NULL,
    time TIMESTAMPTZ NOT NULL,
    sku VARCHAR NOT NULL,
    name VARCHAR NOT NULL,
    category VARCHAR NOT NULL,
    reorder_point BIGINT NOT NULL,
    unit_cost DECIMAL(18, 2) NOT NULL
);
CREATE TABLE products (
    sku VARCHAR PRIMARY KEY,
    name VARCHAR NOT NULL,
    category VARCHAR NOT NULL,
    reorder_point BIGINT NOT NULL,
    unit_cost DECIMAL(18, 2) NOT NULL,
    sequence BIGINT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE customer_events (
    sequence BIGINT NOT NULL,
    event_id VARCHAR NOT NULL,
    time TIMESTAMPTZ NOT NULL,
    customer_id VARCHAR NOT NULL,
    name VARCHAR NOT NULL
);
CREATE TABLE customers (
    customer_id VARCHAR PRIMARY KEY,
    name VARCHAR NOT NULL,
    sequence BIGINT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

-- Receivables
CREATE TABLE invoice_events (
    sequence BIGINT NOT NULL,
    event_id VARCHAR NOT NULL,
    time TIMESTAMPTZ NOT NULL,
    invoice_id VARCHAR NOT NULL,
    customer_id VARCHAR NOT NULL,
    order_id VARCHAR,
    amount DECIMAL(18, 2) NOT NULL,
    issued_on DATE NOT NULL,
    due_date DATE NOT NULL
);
-- Open items: one row per issued invoice with what has been paid on it.
CREATE TABLE invoices (
    invoice_id VARCHAR NOT NULL,
    sequence BIGINT NOT NULL,
    customer_id VARCHAR NOT NULL,
    order_id VARCHAR,
    amount DECIMAL(18, 2) NOT NULL,
    paid DECIMAL(18, 2) NOT NULL,
    issued_on DATE NOT NULL,
    due_date DATE NOT NULL
);
CREATE TABLE payment_events (
    sequence BIGINT NOT NULL,
    event_id VARCHAR NOT NULL,
    time TIMESTAMPTZ NOT NULL,
    payment_id VARCHAR NOT NULL,
    invoice_id VARCHAR NOT NULL,
    amount DECIMAL(18, 2) NOT NULL
);
-- Payments whose invoice has not arrived yet; they count when it does.
CREATE TABLE pending_payments (
    invoice_id VARCHAR NOT NULL,
    sequence BIGINT NOT NULL,
    amount DECIMAL(18, 2) NOT NULL
);
"""
