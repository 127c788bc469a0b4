"""Sales: orders and cancellations → sales by hour and channel, product sales by hour.

Consumes ``order.created`` and ``order.cancelled``. Tables (DDL in
``migrations/m0001_initial.py``): ``order_events``, ``order_lines``,
``order_cancellations``, ``pending_cancellations``, ``sales_by_hour`` (hour, channel)
and ``product_sales_by_hour`` (hour, sku).

Rules (PRODUCT.md): an order counts in the UTC hour of its ``time``; a cancellation
counts in the original order's hour and channel, once however often it is repeated; a
cancellation that arrives before its order waits in ``pending_cancellations``; an
order id created again under another event id is rejected.
"""

from __future__ import annotations

from typing import Any

import duckdb
import pyarrow as pa

from materializer.aggregates.batch import MONEY, TIME, Batch, ints, iso, strings
from materializer.queries import (
    Params,
    QueryContext,
    QueryFunction,
    QueryResult,
    money,
    paged,
    ratio,
)

NAME = "sales"
EVENT_TYPES = ("order.created", "order.cancelled")
TABLES = (
    "order_events",
    "order_lines",
    "order_cancellations",
    "pending_cancellations",
    "sales_by_hour",
    "product_sales_by_hour",
)


def probe(batch: Batch) -> list[str]:
    """Keys to look up before applying: existing orders and existing cancellations."""
    keys = ["o:" + e.data.order_id for e in batch.of_type("order.created")]
    for event in batch.of_type("order.cancelled"):
        keys.append("o:" + event.data.order_id)
        keys.append("c:" + event.data.order_id)
    return keys


def _accept_orders(batch: Batch) -> dict[str, Any]:
    """Orders of the batch that may be stored, by order id; rejects re-creations."""
    created: dict[str, Any] = {}
    conflicts: list[tuple[Any, int]] = []
    for event in batch.of_type("order.created"):
        order_id = event.data.order_id
        earlier = batch.found.get("o:" + order_id)
        if earlier is not None:
            conflicts.append((event, earlier))
        elif order_id in created:
            first = created[order_id].event_id
            batch.reject(
                event, "order.created", f"order_id '{order_id}' already created by event '{first}'"
            )
        else:
            created[order_id] = event
    if conflicts:  # rare: look up who created those orders first
        rows = batch.cur.execute(
            "SELECT sequence, event_id FROM order_events WHERE sequence IN "
            "(SELECT unnest(?::BIGINT[]))",
            [[sequence for _, sequence in conflicts]],
        ).fetchall()
        by_sequence = dict(rows)
        for event, sequence in conflicts:
            first = by_sequence.get(sequence, "?")
            batch.reject(
                event,
                "order.created",
                f"order_id '{event.data.order_id}' already created by event '{first}'",
            )
    return created


def apply(batch: Batch) -> None:
    """Store the batch's orders and cancellations and update the sales aggregates."""
    created = _accept_orders(batch)
    cancels = batch.of_type("order.cancelled")
    if not created and not cancels:
        return
    batch.aggregates.add(NAME)
    cur = batch.cur
    orders = list(created.values())
    if orders:
        _insert_orders(batch, orders)
    # Which orders get cancelled now, by order sequence; stream order within the batch
    # does not change the outcome: a cancellation waits for its order either way.
    targets: dict[str, int] = {}
    effects: list[str] = []
    pending_ids: list[str] = []
    pending_sequences: list[int] = []
    for event in cancels:
        order_id = event.data.order_id
        if order_id in targets or ("c:" + order_id) in batch.found:
            effects.append("repeat")
            continue
        order = created.get(order_id)
        sequence = order.sequence if order is not None else batch.found.get("o:" + order_id)
        if sequence is None:
            effects.append("pending")
            pending_ids.append(order_id)
            pending_sequences.append(event.sequence)
            continue
        effects.append("applied")
        targets[order_id] = sequence
        batch.add_key("c:" + order_id, event.sequence)
    if orders:
        # Cancellations that arrived before these orders.
        waiting = cur.execute(
            "SELECT order_id, min(sequence) FROM pending_cancellations "
            "WHERE order_id IN (SELECT unnest(?::VARCHAR[])) GROUP BY order_id",
            [list(created)],
        ).fetchall()
        for order_id, cancel_sequence in waiting:
            if order_id not in targets:
                targets[order_id] = created[order_id].sequence
                batch.add_key("c:" + order_id, cancel_sequence)
        if waiting:
            cur.execute(
                "DELETE FROM pending_cancellations WHERE order_id IN (SELECT unnest(?::VARCHAR[]))",
                [[order_id for order_id, _ in waiting]],
            )
    if cancels:
        batch.insert(
            "order_cancellations",
            {
                "sequence": ints(e.sequence for e in cancels),
                "event_id": strings(e.event_id for e in cancels),
                "time": pa.array([e.time for e in cancels], TIME),
                "order_id": strings(e.data.order_id for e in cancels),
                "reason": strings(e.data.reason for e in cancels),
                "effect": strings(effects),
            },
        )
    if pending_ids:
        batch.insert(
            "pending_cancellations",
            {"order_id": strings(pending_ids), "sequence": ints(pending_sequences)},
        )
    if targets:
        _cancel(batch, list(targets.values()))


def _insert_orders(batch: Batch, orders: list[Any]) -> None:
    """Raw rows and gross figures of newly created orders."""
    cur = batch.cur
    line_sequences: list[int] = []
    line_numbers: list[int] = []
    line_orders: list[str] = []
    skus: list[str] = []
    quantities: list[int] = []
    prices: list[Any] = []
    for event in orders:
        data = event.data
        for number, line in enumerate(data.lines):
            line_sequences.append(event.sequence)
            line_numbers.append(number)
            line_orders.append(data.order_id)
            skus.append(line.sku)
            quantities.append(line.quantity)
            prices.append(line.unit_price)
        batch.add_key("o:" + data.order_id, event.sequence)
    batch.register(
        "batch_orders",
        {
            "sequence": ints(e.sequence for e in orders),
            "event_id": strings(e.event_id for e in orders),
            "time": pa.array([e.time for e in orders], TIME),
            "order_id": strings(e.data.order_id for e in orders),
            "customer_id": strings(e.data.customer_id for e in orders),
            "channel": strings(e.data.channel for e in orders),
            "total_amount": pa.array([e.data.total_amount for e in orders], MONEY),
        },
    )
    batch.register(
        "batch_lines",
        {
            "order_sequence": ints(line_sequences),
            "line_no": pa.array(line_numbers, pa.int32()),
            "order_id": strings(line_orders),
            "sku": strings(skus),
            "quantity": ints(quantities),
            "unit_price": pa.array(prices, MONEY),
        },
    )
    try:
        cur.execute(
            "INSERT INTO order_events BY NAME "
            "SELECT o.*, date_trunc('hour', o.time) AS hour, coalesce(u.units, 0) AS units "
            "FROM batch_orders o LEFT JOIN (SELECT order_sequence, sum(quantity) AS units "
            "FROM batch_lines GROUP BY ALL) u ON u.order_sequence = o.sequence"
        )
        cur.execute(
            "INSERT INTO order_lines BY NAME SELECT l.*, date_trunc('hour', o.time) AS hour "
            "FROM batch_lines l JOIN batch_orders o ON o.sequence = l.order_sequence"
        )
        _upsert_sales(
            batch,
            "SELECT date_trunc('hour', time) AS hour, channel, count(*) AS orders, "
            "sum(total_amount) AS gross_revenue, sum(units) AS units, 0, 0, 0 "
            "FROM order_events WHERE sequence >= ? GROUP BY ALL",
            [orders[0].sequence],
        )
        _upsert_products(
            batch,
            "SELECT hour, sku, sum(quantity), sum(quantity * unit_price), 0, 0 "
            "FROM order_lines WHERE order_sequence >= ? GROUP BY ALL",
            [orders[0].sequence],
        )
    finally:
        batch.unregister("batch_orders", "batch_lines")
    batch.customers.update(e.data.customer_id for e in orders)


def _cancel(batch: Batch, sequences: list[int]) -> None:
    """Count cancelled orders in their original hour and channel (and their lines)."""
    first = min(sequences)
    # The range predicate lets DuckDB skip row groups; the list picks the orders.
    _upsert_sales(
        batch,
        "SELECT hour, channel, 0, 0, 0, count(*), sum(total_amount), sum(units) "
        "FROM order_events WHERE sequence >= ? AND sequence IN (SELECT unnest(?::BIGINT[])) "
        "GROUP BY ALL",
        [first, sequences],
    )
    _upsert_products(
        batch,
        "SELECT hour, sku, 0, 0, sum(quantity), sum(quantity * unit_price) "
        "FROM order_lines WHERE order_sequence >= ? "
        "AND order_sequence IN (SELECT unnest(?::BIGINT[])) GROUP BY ALL",
        [first, sequences],
    )


def _upsert_sales(batch: Batch, select: str, args: list[Any]) -> None:
    # The SELECT groups by (hour, channel): an upsert must never see a key twice.
    rows = batch.cur.execute(
        f"INSERT INTO sales_by_hour {select} ON CONFLICT DO UPDATE SET "
        "orders = sales_by_hour.orders + excluded.orders, "
        "gross_revenue = sales_by_hour.gross_revenue + excluded.gross_revenue, "
        "units = sales_by_hour.units + excluded.units, "
        "cancelled_orders = sales_by_hour.cancelled_orders + excluded.cancelled_orders, "
        "cancelled_revenue = sales_by_hour.cancelled_revenue + excluded.cancelled_revenue, "
        "cancelled_units = sales_by_hour.cancelled_units + excluded.cancelled_units "
        "RETURNING hour, channel",
        args,
    ).fetchall()
    for hour, channel in rows:
        batch.sales_hours.add(iso(hour))
        batch.channels.add(channel)


def _upsert_products(batch: Batch, select: str, args: list[Any]) -> None:
    rows = batch.cur.execute(
        f"INSERT INTO product_sales_by_hour {select} ON CONFLICT DO UPDATE SET "
        "units = product_sales_by_hour.units + excluded.units, "
        "revenue = product_sales_by_hour.revenue + excluded.revenue, "
        "cancelled_units = product_sales_by_hour.cancelled_units + excluded.cancelled_units, "
        "cancelled_revenue = product_sales_by_hour.cancelled_revenue "
        "+ excluded.cancelled_revenue "
        "RETURNING sku",
        args,
    ).fetchall()
    batch.skus.update(sku for (sku,) in rows)


# Named queries ----------------------------------------------------------------------

_TOTALS = (
    "sum(orders), sum(cancelled_orders), sum(gross_revenue), sum(cancelled_revenue), sum(units)"
)


def _figures(row: tuple[Any, ...]) -> dict[str, Any]:
    orders, cancelled, gross, cancelled_revenue, units = row
    orders, cancelled = int(orders or 0), int(cancelled or 0)
    net = (gross or 0) - (cancelled_revenue or 0)
    return {
        "orders": orders,
        "cancelled_orders": cancelled,
        "gross_revenue": money(gross),
        "cancelled_revenue": money(cancelled_revenue),
        "net_revenue": money(net),
        "units": int(units or 0),
        "average_order_value": ratio(net, orders - cancelled),
    }


def sales_by_hour(
    cur: duckdb.DuckDBPyConnection, params: Params, context: QueryContext
) -> QueryResult:
    """Hourly sales in ``[from, to)``, optionally of one channel, ordered by hour."""
    start, end = params.as_time("from"), params.as_time("to")
    channel = params.as_str("channel")
    offset, limit = params.page()
    params.done()
    return paged(
        cur,
        f"SELECT hour, {_TOTALS} FROM sales_by_hour WHERE hour >= ? AND hour < ? "
        "AND (?::VARCHAR IS NULL OR channel = ?) GROUP BY hour ORDER BY hour",
        [start, end, channel, channel],
        offset,
        limit,
        lambda row: {"hour": iso(row[0]), **_figures(row[1:])},
    )


def sales_summary(
    cur: duckdb.DuckDBPyConnection, params: Params, context: QueryContext
) -> QueryResult:
    """Sales totals over ``[from, to)``, optionally of one channel."""
    start, end = params.as_time("from"), params.as_time("to")
    channel = params.as_str("channel")
    params.done()
    row = cur.execute(
        f"SELECT {_TOTALS} FROM sales_by_hour WHERE hour >= ? AND hour < ? "
        "AND (?::VARCHAR IS NULL OR channel = ?)",
        [start, end, channel, channel],
    ).fetchone()
    assert row is not None
    return QueryResult({"from": iso(start), "to": iso(end), **_figures(row)})


def top_products(
    cur: duckdb.DuckDBPyConnection, params: Params, context: QueryContext
) -> QueryResult:
    """Best-selling products in ``[from, to)`` by net revenue, then sku."""
    start, end = params.as_time("from"), params.as_time("to")
    offset, limit = params.page(default_limit=10)
    params.done()
    return paged(
        cur,
        "SELECT s.sku, p.name, p.category, s.units, s.revenue FROM ("
        " SELECT sku, sum(units) - sum(cancelled_units) AS units,"
        " sum(revenue) - sum(cancelled_revenue) AS revenue"
        " FROM product_sales_by_hour WHERE hour >= ? AND hour < ? GROUP BY sku) s"
        " LEFT JOIN products p USING (sku) ORDER BY s.revenue DESC, s.sku",
        [start, end],
        offset,
        limit,
        lambda row: {
            "sku": row[0],
            "name": row[1],
            "category": row[2],
            "units": int(row[3]),
            "revenue": money(row[4]),
        },
    )


QUERIES: dict[str, QueryFunction] = {
    "sales_by_hour": sales_by_hour,
    "sales_summary": sales_summary,
    "top_products": top_products,
}
