"""Sales: orders and cancellations → sales by hour and channel, product sales by hour.

Consumes ``order.created`` and ``order.cancelled`` (``registry.SALES``). Tables (DDL in
``migrations/m0001_initial.py``): ``order_events``, ``order_lines``,
``order_cancellations``, ``pending_cancellations``, ``sales_by_hour`` (hour, channel)
and ``product_sales_by_hour`` (hour, sku).

Rules (docs/EVENTS.md, "What the materializer makes of them"): an order counts in the
UTC hour of its ``time``; a cancellation counts in the original order's hour and
channel, once however often it is repeated; a cancellation that arrives before its
order waits in ``pending_cancellations``; an order id created again under another event
id is rejected.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from materializer.aggregates.batch import Accepted, Batch, event_table, iso
from materializer.aggregates.columns import (
    Kind,
    amounts,
    decimals,
    from_micros,
    instants,
    int32s,
    ints,
    scan,
    strings,
    sums,
    times,
    values,
)
from materializer.aggregates.deltas import GROUP_IN_PYTHON_MAX, Folded, group_in_python
from materializer.aggregates.history import History
from materializer.queries import (
    EXACT,
    Cursor,
    QueryContext,
    QueryResult,
    Select,
    implements,
    money,
    ratio,
)
from pulse_bi.contract import UtcTime, registry

#: ``Batch.accept_first`` arguments of the events that create ids.
CREATES = ("order.created", "order_id", "o:", "order_events", "created")
SPEC = registry.SALES

#: The hourly tables take appends (``materializer.aggregates.deltas``).
_SALES_SUMS = "orders gross_revenue units cancelled_orders cancelled_revenue cancelled_units"
SALES_BY_HOUR = Folded(
    "sales_by_hour", keys=("hour", "channel", "site"), sums=tuple(_SALES_SUMS.split())
)
PRODUCT_SALES_BY_HOUR = Folded(
    "product_sales_by_hour",
    keys=("hour", "sku", "site"),
    sums=("units", "revenue", "cancelled_units", "cancelled_revenue"),
)
FOLDED = (SALES_BY_HOUR, PRODUCT_SALES_BY_HOUR)
#: A small batch's new orders, cancelled orders and lines are grouped in Python
#: (``deltas.group_in_python``). Unit sums are DECIMAL(38,0) there: those of many large
#: orders pass BIGINT (HUGEINT in DuckDB, docs/EVENTS.md "Limits"); a line's quantity x
#: unit price has 2 decimals.
_UNITS = decimals("DECIMAL(38,0)")
#: An hour in microseconds: an order's hour is its ``Accepted.micros`` floored to it.
_HOUR = 3_600_000_000


def probe(batch: Batch) -> list[str]:
    """Keys to look up before applying.

    ``o:`` an order exists, ``c:`` it is cancelled, ``p:`` a cancellation waits for it.
    """
    keys = []
    for event in batch.of_type("order.created"):
        keys.append("o:" + event.data.order_id)
        keys.append("p:" + event.data.order_id)
    for event in batch.of_type("order.cancelled"):
        keys.append("o:" + event.data.order_id)
        keys.append("c:" + event.data.order_id)
    return keys


def _cancellation_targets(
    batch: Batch, created: dict[str, Accepted]
) -> tuple[dict[str, int], list[str], list[Accepted]]:
    """Orders cancelled by this batch (order id → order sequence), each cancellation's
    effect, and the cancellations that must wait for their order.

    Stream order within the batch does not change the outcome: a cancellation waits
    for its order either way, and only the first one of an order counts.
    """
    found = batch.found
    targets: dict[str, int] = {}
    effects: list[str] = []
    waiting: list[Accepted] = []
    for event in batch.of_type("order.cancelled"):
        order_id = event.data.order_id
        if order_id in targets or ("c:" + order_id) in found:
            effects.append("repeat")
            continue
        order = created.get(order_id)
        sequence = order.sequence if order is not None else found.get("o:" + order_id)
        if sequence is None:
            effects.append("pending")
            waiting.append(event)
            continue
        effects.append("applied")
        targets[order_id] = sequence
        batch.add_key("c:" + order_id, event.sequence)
    # Cancellations that arrived in earlier batches, before these orders.
    for order_id, order in created.items():
        cancel_sequence = found.get("p:" + order_id)
        if cancel_sequence is not None and order_id not in targets:
            targets[order_id] = order.sequence
            batch.add_key("c:" + order_id, cancel_sequence)
    return targets, effects, waiting


def apply(batch: Batch) -> None:
    """Store the batch's orders and cancellations and update the sales aggregates."""
    if (found := batch.accept_with_followers(SPEC.name, CREATES, "order.cancelled")) is None:
        return
    created, cancels = found
    orders = list(created.values())
    targets, effects, waiting = _cancellation_targets(batch, created)
    new = _insert_orders(batch, orders) if orders else None
    if cancels:
        batch.insert(
            "order_cancellations",
            {
                "sequence": ints(e.sequence for e in cancels),
                "event_id": strings(e.event_id for e in cancels),
                "time": instants(e.micros for e in cancels),
                "order_id": strings(e.data.order_id for e in cancels),
                "reason": strings(e.data.reason for e in cancels),
                "effect": strings(effects),
                "site": batch.site_column(cancels),
            },
        )
    if waiting:
        batch.insert(
            "pending_cancellations",
            {
                "order_id": strings(e.data.order_id for e in waiting),
                "sequence": ints(e.sequence for e in waiting),
            },
        )
        for event in waiting:
            batch.add_key("p:" + event.data.order_id, event.sequence)
    released = [order_id for order_id in created if ("p:" + order_id) in batch.found]
    if released:  # rare: orders whose cancellation was waiting for them
        batch.cur.execute(
            "DELETE FROM pending_cancellations WHERE order_id IN (SELECT unnest(?::VARCHAR[]))",
            [released],
        )
    # An order cancelled in its own batch: its rows wait in the queue (``Batch.cur``).
    own = any(order_id in created for order_id in targets)
    _upsert(batch, new, bool(orders), sorted(targets.values()), own)


#: ``(key, values)`` rows of the hourly tables, before grouping
#: (``deltas.group_in_python``): keys (hour, channel, site) and (hour, sku, site).
Rows = list[tuple[tuple[Any, ...], tuple[Any, ...]]]


def _insert_orders(batch: Batch, orders: list[Accepted]) -> tuple[Rows, Rows] | None:
    """Raw rows of newly created orders and their lines.

    Keeps their frames in ``batch.frames`` for ``_upsert``, and returns the hourly rows
    of a small batch (``GROUP_IN_PYTHON_MAX``) for it to group: the hourly deltas of new
    orders come from the batch itself instead of reading back the rows just inserted.
    """
    line_sequences: list[int] = []
    line_numbers: list[int] = []
    line_orders: list[str] = []
    line_hours: list[int] = []
    skus: list[str] = []
    quantities: list[int] = []
    prices: list[Any] = []
    units: list[int] = []
    line_sites: list[str] = []
    # The UTC hour of each order, what ``date_trunc('hour', time)`` gives in the UTC
    # session, in Python: stored with the rows (a date_trunc in the INSERT cost ~0.5 ms
    # of planning per statement), named in the change notice, grouped here. As
    # microseconds since the epoch (``Accepted.micros``), floored to the hour.
    hours: list[int] = []
    for event in orders:
        data = event.data
        site = event.message.site or ""
        micros = event.micros
        hour = micros - micros % _HOUR
        hours.append(hour)
        count = 0
        for number, line in enumerate(data.lines):
            line_sequences.append(event.sequence)
            line_numbers.append(number)
            line_orders.append(data.order_id)
            line_hours.append(hour)
            skus.append(line.sku)
            quantities.append(line.quantity)
            prices.append(line.unit_price)
            line_sites.append(site)
            count += line.quantity
        units.append(count)
        batch.add_key("o:" + data.order_id, event.sequence)
    batch.frames["batch_orders"] = order_frame = event_table(
        orders,
        {
            "order_id": strings,
            "customer_id": strings,
            "channel": strings,
            "total_amount": amounts,
        },
        units=ints(units),
        hour=instants(hours),
    )
    batch.frames["batch_lines"] = line_frame = {
        "order_sequence": ints(line_sequences),
        "line_no": int32s(line_numbers),
        "order_id": strings(line_orders),
        "sku": strings(skus),
        "quantity": ints(quantities),
        "unit_price": amounts(prices),
        "hour": instants(line_hours),
        "site": strings(line_sites),
    }
    batch.insert("order_events", order_frame)
    batch.insert("order_lines", line_frame)
    batch.changes.customers.extend(e.data.customer_id for e in orders)
    batch.changes.skus.extend(skus)
    # Hours and channels in Python: they are known here, no need to read them back.
    # The batch's few distinct hours as datetimes: the keys of its hourly rows.
    as_times = {hour: from_micros(hour) for hour in set(hours)}
    batch.changes.sales_hours.extend(map(iso, as_times.values()))
    batch.changes.channels.extend({e.data.channel for e in orders})
    if len(orders) > GROUP_IN_PYTHON_MAX or len(skus) > GROUP_IN_PYTHON_MAX:
        return None
    sales: Rows = [
        (
            (as_times[hour], e.data.channel, e.message.site or ""),
            (1, e.data.total_amount, count, 0, 0, 0),
        )
        for hour, e, count in zip(hours, orders, units, strict=True)
    ]
    products: Rows = [
        ((as_times[hour], sku, site), (quantity, EXACT.multiply(quantity, price), 0, 0))
        for hour, sku, site, quantity, price in zip(
            line_hours, skus, line_sites, quantities, prices, strict=True
        )
    ]
    return sales, products


#: The columns of a delta row of each hourly table, in the order ``Rows`` has them.
_SALES_ROW: dict[str, Kind] = {
    "hour": times,
    "channel": strings,
    "site": strings,
    "orders": ints,
    "gross_revenue": sums,
    "units": _UNITS,
    "cancelled_orders": ints,
    "cancelled_revenue": sums,
    "cancelled_units": _UNITS,
}
_PRODUCT_SALES_ROW: dict[str, Kind] = {
    "hour": times,
    "sku": strings,
    "site": strings,
    "units": _UNITS,
    "revenue": sums,
    "cancelled_units": _UNITS,
    "cancelled_revenue": sums,
}


def _upsert(
    batch: Batch,
    new: tuple[Rows, Rows] | None,
    new_orders: bool,
    targets: list[int],
    own: bool,
) -> None:
    """Add new orders (gross) and cancellations (in the original order's hour and
    channel) to the hourly tables: their rows grouped by key, appended to the deltas.

    A small batch (``new``: its orders' rows, or none) groups in Python: the cancelled
    orders' hours, channels, amounts and lines are read in one SELECT by their
    sequences, and the grouped rows join the batch's one append to the deltas
    (``Batch.append_delta``). Larger batches and cancellations of archived orders group
    in SQL (``_upsert_in_sql``). ``own``: a cancelled order is one of this batch, whose
    rows the SELECT must wait for.
    """
    if not new_orders and not targets:
        return
    archive = batch.archive
    archived = archive is not None and bool(targets) and targets[0] <= archive.horizon
    if (new_orders and new is None) or len(targets) > GROUP_IN_PYTHON_MAX or archived:
        _upsert_in_sql(batch, new_orders, targets)
        return
    sales, products = new if new is not None else ([], [])
    if targets:
        cancelled = _cancelled(batch.cur if own else batch.earlier, targets)
        for is_order, hour, name, site, amount, quantity in cancelled:
            if is_order:
                sales.append(((hour, name, site), (0, 0, 0, 1, amount, quantity)))
                batch.changes.sales_hours.append(iso(hour))
                batch.changes.channels.append(name)
            else:
                products.append(
                    ((hour, name, site), (0, 0, quantity, EXACT.multiply(quantity, amount)))
                )
                batch.changes.skus.append(name)
    for table, rows, kinds in (
        (SALES_BY_HOUR, sales, _SALES_ROW),
        (PRODUCT_SALES_BY_HOUR, products, _PRODUCT_SALES_ROW),
    ):
        if rows:
            batch.append_delta(table, group_in_python(rows, len(table.sums), kinds))


def _cancelled(cur: Cursor, targets: list[int]) -> list[tuple[Any, ...]]:
    """The cancelled orders (by sequence) and their lines as ``(is_order, hour, channel
    or sku, site, total amount or unit price, units or quantity)``.

    The sequences (integers) are written into the SQL as constant lists: DuckDB filters
    the scans with them and skips the row groups outside their range (both tables are in
    sequence order)."""
    listed = ", ".join(f"{s:d}" for s in targets)
    return cur.execute(
        "SELECT true, hour, channel, site, total_amount, units FROM order_events"
        f" WHERE sequence IN ({listed})"
        " UNION ALL SELECT false, hour, sku, site, unit_price, quantity FROM order_lines"
        f" WHERE order_sequence IN ({listed})"
    ).fetchall()


def _upsert_in_sql(batch: Batch, new_orders: bool, targets: list[int]) -> None:
    """``_upsert`` grouped by DuckDB: new orders from the batch's frames, cancelled
    orders (of this batch or any earlier one, in the file or the archive) joined by
    sequence with ``order_events``/``order_lines``. The build side is the cancelled
    sequences, which DuckDB pushes into the scan as an IN filter, so only the row groups
    holding those orders are read (both tables are in sequence order).
    """
    cur = batch.cur
    frames = batch.frames
    # Each part is grouped by the key already: a delta row per key, part and batch. The
    # frames each reads are held in local variables for DuckDB (``columns.scan``).
    sales: list[str] = []
    products: list[str] = []
    if new_orders:
        cancelled = "0 AS cancelled_orders, 0 AS cancelled_revenue, 0 AS cancelled_units"
        batch_orders = values(frames["batch_orders"])  # noqa: F841 - read by DuckDB below
        sales.append(
            "SELECT hour, channel, site, count(*) AS orders,"
            f" sum(total_amount) AS gross_revenue, sum(units) AS units, {cancelled}"
            f" FROM {scan(frames['batch_orders'], 'batch_orders')} GROUP BY 1, 2, 3"
        )
        batch_lines = values(frames["batch_lines"])  # noqa: F841 - read by DuckDB below
        products.append(
            "SELECT hour, sku, site, sum(quantity) AS units,"
            " sum(quantity * unit_price) AS revenue, 0 AS cancelled_units,"
            f" 0 AS cancelled_revenue FROM {scan(frames['batch_lines'], 'batch_lines')}"
            " GROUP BY 1, 2, 3"
        )
    if targets:
        cancelled_orders = values({"sequence": ints(targets)})  # noqa: F841 - read below
        order_rows, line_rows = "order_events", "order_lines"
        archive = batch.archive
        old = [s for s in targets if archive is not None and s <= archive.horizon]
        if old:
            # Orders older than the archive horizon left the raw tables (docs/OPERATIONS.md,
            # "Archive and retention"): their rows are read back from the archive.
            old_orders, old_lines = archive.orders(cur, old)
            archived_orders = values(old_orders)  # noqa: F841 - read by DuckDB below
            archived_lines = values(old_lines)  # noqa: F841 - read by DuckDB below
            order_rows = (
                "(SELECT sequence, hour, channel, total_amount, units, site FROM order_events"
                f" UNION ALL SELECT * FROM {scan(old_orders, 'archived_orders')})"
            )
            line_rows = (
                "(SELECT order_sequence, hour, sku, quantity, unit_price, site FROM order_lines"
                f" UNION ALL SELECT * FROM {scan(old_lines, 'archived_lines')})"
            )
        sales.append(
            "SELECT o.hour, o.channel, o.site, 0 AS orders, 0 AS gross_revenue, 0 AS units,"
            " count(*) AS cancelled_orders, sum(o.total_amount) AS cancelled_revenue,"
            " sum(o.units) AS cancelled_units"
            f" FROM cancelled_orders c JOIN {order_rows} o ON o.sequence = c.sequence"
            " GROUP BY 1, 2, 3"
        )
        products.append(
            "SELECT l.hour, l.sku, l.site, 0 AS units, 0 AS revenue,"
            " sum(l.quantity) AS cancelled_units,"
            " sum(l.quantity * l.unit_price) AS cancelled_revenue"
            f" FROM cancelled_orders c JOIN {line_rows} l ON l.order_sequence = c.sequence"
            " GROUP BY 1, 2, 3"
        )
    # One row per key, as ``_upsert`` appends: new and cancelled orders of a key together.
    union_sales = SALES_BY_HOUR.grouped(f"({' UNION ALL BY NAME '.join(sales)})")
    union_products = PRODUCT_SALES_BY_HOUR.grouped(f"({' UNION ALL BY NAME '.join(products)})")
    # What the change notice names: new orders' hours, channels and skus are known
    # (``_insert_orders``); those of cancelled orders come back from the appends.
    returning_sales = " RETURNING hour, channel" if targets else ""
    returning_products = " RETURNING sku" if targets else ""
    rows = cur.execute(SALES_BY_HOUR.appended(union_sales) + returning_sales).fetchall()
    batch.delta_rows += len(rows) if targets else rows[0][0]
    if targets:
        for hour, channel in rows:
            batch.changes.sales_hours.append(iso(hour))
            batch.changes.channels.append(channel)
    rows = cur.execute(
        PRODUCT_SALES_BY_HOUR.appended(union_products) + returning_products
    ).fetchall()
    batch.delta_rows += len(rows) if targets else rows[0][0]
    if targets:
        batch.changes.skus.extend(sku for (sku,) in rows)


#: Key columns of ``sales_by_hour`` and ``product_sales_by_hour`` (the rebuild groups
#: by them; each is also a column of ``order_events`` or ``order_lines``).
SALES_KEYS = "hour, channel, site"
PRODUCT_SALES_KEYS = "hour, sku, site"


def rebuild(history: History) -> None:
    """The hourly tables, waiting cancellations and order keys from every order and
    cancellation: an order counts as cancelled, once, when any cancellation of its id
    exists (whether it came before or after the order); a cancellation whose order
    never came waits."""
    cur = history.cur
    orders, lines = history.of("order_events"), history.of("order_lines")
    cancellations = history.of("order_cancellations")
    cancelled = f"(SELECT DISTINCT order_id, true AS cancelled FROM {cancellations})"
    cur.execute(
        f"INSERT INTO {SALES_BY_HOUR.base} BY NAME SELECT {SALES_KEYS}, count(*) AS orders,"
        " sum(total_amount) AS gross_revenue, sum(units) AS units,"
        " count(cancelled) AS cancelled_orders,"
        " coalesce(sum(total_amount) FILTER (WHERE cancelled), 0) AS cancelled_revenue,"
        " coalesce(sum(units) FILTER (WHERE cancelled), 0) AS cancelled_units"
        f" FROM {orders} LEFT JOIN {cancelled} c USING (order_id) GROUP BY {SALES_KEYS}"
    )
    cur.execute(
        f"INSERT INTO {PRODUCT_SALES_BY_HOUR.base} BY NAME SELECT {PRODUCT_SALES_KEYS},"
        " sum(quantity) AS units, sum(quantity * unit_price) AS revenue,"
        " coalesce(sum(quantity) FILTER (WHERE cancelled), 0) AS cancelled_units,"
        " coalesce(sum(quantity * unit_price) FILTER (WHERE cancelled), 0)"
        f" AS cancelled_revenue FROM {lines} LEFT JOIN {cancelled} c USING (order_id)"
        f" GROUP BY {PRODUCT_SALES_KEYS}"
    )
    waiting = (
        f"SELECT order_id, sequence FROM {cancellations} WHERE effect = 'pending'"
        f" AND order_id NOT IN (SELECT order_id FROM {orders})"
    )
    cur.execute(f"INSERT INTO pending_cancellations BY NAME {waiting}")
    history.add_keys(f"SELECT 'o:' || order_id AS key, sequence FROM {orders}")
    history.add_keys(f"SELECT 'p:' || order_id AS key, sequence FROM ({waiting})")
    # The cancellation that counted: the one applied to the order, or the first that
    # waited for it (only the key's existence decides anything later).
    history.add_keys(
        "SELECT 'c:' || order_id AS key, coalesce(min(sequence) FILTER"
        " (WHERE effect = 'applied'), min(sequence)) AS sequence"
        f" FROM {cancellations} WHERE effect IN ('applied', 'pending')"
        f" AND order_id IN (SELECT order_id FROM {orders}) GROUP BY order_id"
    )


# Named queries ----------------------------------------------------------------------

_TOTALS = (
    "sum(orders), sum(cancelled_orders), sum(gross_revenue), sum(cancelled_revenue), sum(units)"
)


def _figures(row: tuple[Any, ...]) -> dict[str, Any]:
    orders, cancelled, gross, cancelled_revenue, units = row
    orders, cancelled = int(orders or 0), int(cancelled or 0)
    net = EXACT.subtract(Decimal(gross or 0), Decimal(cancelled_revenue or 0))
    return {
        "orders": orders,
        "cancelled_orders": cancelled,
        "gross_revenue": money(gross),
        "cancelled_revenue": money(cancelled_revenue),
        "net_revenue": money(net),
        "units": int(units or 0),
        "average_order_value": ratio(net, orders - cancelled),
    }


_IN_WINDOW = (
    "hour >= ? AND hour < ? AND (?::VARCHAR IS NULL OR channel = ?)"
    " AND (?::VARCHAR IS NULL OR site = ?)"
)


def _window(params: registry.SalesWindow) -> list[Any]:
    return [params.from_, params.to, params.channel, params.channel, params.site, params.site]


def _hourly(row: tuple[Any, ...]) -> registry.HourlySalesRow:
    return registry.HourlySalesRow(hour=UtcTime.of(row[0]), **_figures(row[1:]))


def _per_channel(row: tuple[Any, ...]) -> registry.ChannelSalesRow:
    return registry.ChannelSalesRow(channel=row[0], **_figures(row[1:]))


@implements(registry.SALES_BY_HOUR)
def sales_by_hour(cur: Cursor, params: registry.PagedSalesWindow, _: QueryContext) -> Select:
    """Hourly sales in ``[from, to)``, optionally of one channel, ordered by hour."""
    sql = f"SELECT hour, {_TOTALS} FROM sales_by_hour WHERE {_IN_WINDOW} GROUP BY hour"
    return Select(f"{sql} ORDER BY hour", _window(params), _hourly)


@implements(registry.SALES_BY_CHANNEL)
def sales_by_channel(cur: Cursor, params: registry.PagedSalesWindow, _: QueryContext) -> Select:
    """Sales per channel over ``[from, to)``, by net revenue desc then channel."""
    sql = f"SELECT channel, {_TOTALS} FROM sales_by_hour WHERE {_IN_WINDOW} GROUP BY channel"
    order = "sum(gross_revenue) - sum(cancelled_revenue) DESC, channel"
    return Select(f"{sql} ORDER BY {order}", _window(params), _per_channel)


@implements(registry.SALES_SUMMARY)
def sales_summary(
    cur: Cursor, params: registry.SalesWindow, _: QueryContext
) -> QueryResult[registry.SalesSummaryRow]:
    """Sales totals over ``[from, to)``, optionally of one channel."""
    sql = f"SELECT {_TOTALS} FROM sales_by_hour WHERE {_IN_WINDOW}"
    row = cur.execute(sql, _window(params)).fetchone()
    assert row is not None
    start, end = UtcTime.of(params.from_), UtcTime.of(params.to)
    return QueryResult(registry.SalesSummaryRow(from_=start, to=end, **_figures(row)))


_TOP_PRODUCTS = (
    "SELECT s.sku, p.name, p.category, s.units, s.revenue FROM ("
    " SELECT sku, sum(units) - sum(cancelled_units) AS units,"
    " sum(revenue) - sum(cancelled_revenue) AS revenue"
    " FROM product_sales_by_hour WHERE hour >= ? AND hour < ?"
    " AND (?::VARCHAR IS NULL OR site = ?) GROUP BY sku) s"
    " LEFT JOIN products p USING (sku) ORDER BY s.revenue DESC, s.sku"
)


@implements(registry.TOP_PRODUCTS)
def top_products(cur: Cursor, params: registry.TopProductsParams, _: QueryContext) -> Select:
    """Best-selling products in ``[from, to)`` by net revenue, then sku."""
    return Select(_TOP_PRODUCTS, [params.from_, params.to, params.site, params.site])
