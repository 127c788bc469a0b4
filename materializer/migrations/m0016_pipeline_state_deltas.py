"""The pipeline state becomes an aggregate folded like the others: a batch appends a row.

Every batch updated ``pipeline_state``, its one row, by key: a statement of its own,
0.7 ms of a one-order batch's 4.2 ms on a fast machine (docs/BENCHMARKS.md, "The
pipeline state as a delta"). Its columns are counters that add up and maxima: the
stream's last applied sequence grows with every batch, and so do the times. So it is
kept as the sales and the stock are (m0008, m0012): ``pipeline_state_base`` holds the
folded row, each batch appends its row to ``aggregate_deltas`` (the one append the
batch makes there for its other aggregates anyway), and the view ``pipeline_state``
reads the sum of both. A fold adds the rows to the base, as it does the others'.

The pipeline's row takes the columns of ``aggregate_deltas`` the other aggregates have
(``pipeline.PIPELINE_STATE`` names them), which the view names back: each column a row
leaves NULL costs the WAL about its full width, and its own nine columns, NULL in
every other row, made the WAL of the usual mix 13 % larger. Only the
central site's latest event time has a column of its own. ``aggregate_deltas`` is made
again for it and for the pipeline's name in the CHECK; the rows waiting in it move over.
"""

SQL = """
CREATE TABLE aggregate_deltas_next (
    aggregate VARCHAR NOT NULL CHECK (aggregate IN ('sales_by_hour', 'product_sales_by_hour',
        'stock_snapshot', 'pipeline_state')),
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
    central_last_event_time TIMESTAMPTZ,
    CHECK (aggregate <> 'sales_by_hour' OR (hour IS NOT NULL AND channel IS NOT NULL
        AND orders IS NOT NULL AND gross_revenue IS NOT NULL AND units IS NOT NULL
        AND cancelled_orders IS NOT NULL AND cancelled_revenue IS NOT NULL
        AND cancelled_units IS NOT NULL)),
    CHECK (aggregate <> 'product_sales_by_hour' OR (hour IS NOT NULL AND sku IS NOT NULL
        AND units IS NOT NULL AND revenue IS NOT NULL AND cancelled_units IS NOT NULL
        AND cancelled_revenue IS NOT NULL)),
    CHECK (aggregate <> 'stock_snapshot' OR (sku IS NOT NULL AND warehouse IS NOT NULL
        AND on_hand IS NOT NULL AND last_movement_at IS NOT NULL)),
    CHECK (aggregate <> 'pipeline_state' OR (orders IS NOT NULL
        AND cancelled_orders IS NOT NULL AND units IS NOT NULL
        AND cancelled_units IS NOT NULL AND on_hand IS NOT NULL
        AND last_movement_at IS NOT NULL))
);
INSERT INTO aggregate_deltas_next BY NAME SELECT * FROM aggregate_deltas;
DROP TABLE aggregate_deltas;
ALTER TABLE aggregate_deltas_next RENAME TO aggregate_deltas;

ALTER TABLE pipeline_state RENAME TO pipeline_state_base;

-- The pipeline's columns of aggregate_deltas (pipeline.PIPELINE_STATE.slots, which a
-- test holds this view to): orders the last applied sequence, cancelled_orders the
-- events applied, units those rejected, cancelled_units the duplicates, on_hand the
-- batches; hour the latest event time, last_movement_at the time of the batch.
CREATE VIEW pipeline_state AS
SELECT id, max(last_sequence)::BIGINT AS last_sequence,
    sum(events_applied)::BIGINT AS events_applied,
    sum(events_rejected)::BIGINT AS events_rejected,
    sum(events_duplicate)::BIGINT AS events_duplicate,
    sum(batches)::BIGINT AS batches,
    max(last_event_time) AS last_event_time,
    max(last_batch_at) AS last_batch_at,
    max(central_last_event_time) AS central_last_event_time
FROM (
    SELECT id, last_sequence, events_applied, events_rejected, events_duplicate, batches,
        last_event_time, last_batch_at, central_last_event_time
    FROM pipeline_state_base
    UNION ALL
    SELECT 1, orders, cancelled_orders, units, cancelled_units, on_hand, hour,
        last_movement_at, central_last_event_time
    FROM aggregate_deltas WHERE aggregate = 'pipeline_state'
)
GROUP BY id;
"""
