"""Receivables: invoices and payments → open items, AR aging and overdue invoices.

Consumes ``invoice.issued`` and ``payment.received`` (``registry.RECEIVABLES``). Tables (DDL in
``migrations/m0001_initial.py``): ``invoice_events``, ``payment_events``, ``invoices``
(the open items: each invoice not yet paid in full, with the amount paid so far) and
``pending_payments`` (payments whose invoice has not arrived yet; they count when it
does).

Aging depends on the as-of date, so buckets are computed at query time from the open
items (balance = amount - paid > 0): days overdue = as_of - due_date; current (≤ 0),
1-30, 31-60, 61-90, over 90.

``invoices`` holds open items only: an invoice paid in full moves to
``settled_invoices`` (migration m0009), or goes there straight when it is paid in full
before or as it arrives, and comes back when a later payment (a refund is a negative
one) leaves a balance again (docs/EVENTS.md). So the reads cost in proportion to the
open items, not to every invoice ever issued (docs/BENCHMARKS.md).
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

import duckdb
import numpy as np

from materializer.aggregates.batch import Accepted, Batch, event_table
from materializer.aggregates.columns import (
    Kind,
    amounts,
    dates,
    instants,
    ints,
    scan,
    strings,
    sums,
    take,
    values,
)
from materializer.aggregates.history import History
from materializer.queries import Cursor, QueryContext, QueryResult, Select, implements, money
from pulse_bi.contract import registry

#: ``Batch.accept_first`` arguments of the events that create ids.
CREATES = ("invoice.issued", "invoice_id", "i:", "invoice_events", "issued")
SPEC = registry.RECEIVABLES


def probe(batch: Batch) -> list[str]:
    """Keys to look up: ``i:`` an invoice exists, ``q:`` payments wait for it."""
    keys = []
    for event in batch.of_type("invoice.issued"):
        keys.append("i:" + event.data.invoice_id)
        keys.append("q:" + event.data.invoice_id)  # payments waiting for it
    keys.extend("i:" + e.data.invoice_id for e in batch.of_type("payment.received"))
    return keys


def apply(batch: Batch) -> None:
    """Store invoices and payments and bring the open items up to date."""
    if (found := batch.accept_with_followers(SPEC.name, CREATES, "payment.received")) is None:
        return
    issued, payments = found
    batch.changes.receivables = True
    paid_now: dict[str, Decimal] = defaultdict(Decimal)  # invoices of this batch
    paid_before: dict[int, Decimal] = defaultdict(Decimal)  # by invoice sequence
    pending: list[Accepted] = []
    for event in payments:
        invoice_id = event.data.invoice_id
        if invoice_id in issued:
            paid_now[invoice_id] += event.data.amount
            continue
        sequence = batch.found.get("i:" + invoice_id)
        if sequence is None:
            pending.append(event)
        else:
            paid_before[sequence] += event.data.amount
    if payments:
        batch.insert(
            "payment_events",
            {
                "sequence": ints(e.sequence for e in payments),
                "event_id": strings(e.event_id for e in payments),
                "time": instants(e.micros for e in payments),
                "payment_id": strings(e.data.payment_id for e in payments),
                "invoice_id": strings(e.data.invoice_id for e in payments),
                "amount": amounts(e.data.amount for e in payments),
                "site": batch.site_column(payments),
            },
        )
    if issued:
        _insert_invoices(batch, list(issued.values()), paid_now)
    if pending:
        for event in pending:
            batch.add_key("q:" + event.data.invoice_id, event.sequence)
        batch.insert(
            "pending_payments",
            {
                "invoice_id": strings(e.data.invoice_id for e in pending),
                "sequence": ints(e.sequence for e in pending),
                "amount": amounts(e.data.amount for e in pending),
            },
        )
    if paid_before:
        _pay_earlier_invoices(batch, paid_before)


def _pay_earlier_invoices(batch: Batch, paid_before: dict[int, Decimal]) -> None:
    """Add payments to invoices of earlier batches, open or settled (by invoice sequence).

    An open invoice paid in full moves to ``settled_invoices``; a settled one that a
    payment (a refund is a negative one) leaves with a balance moves back. Moving rows
    between the two tables keeps the reads on the open items only. Only rows of earlier
    batches change: the batch's own invoices wait in its queue (``Batch.earlier``).
    """
    cur = batch.earlier
    paid = {"sequence": ints(paid_before), "amount": sums(paid_before.values())}
    batch_paid = values(paid)  # noqa: F841 - read by DuckDB below
    rows = scan(paid, "batch_paid")
    first = min(paid_before)
    updated = cur.execute(
        f"UPDATE invoices SET paid = invoices.paid + p.amount FROM {rows} p "
        "WHERE invoices.sequence >= ? AND invoices.sequence = p.sequence "
        "RETURNING invoices.sequence, invoices.customer_id, invoices.paid >= invoices.amount",
        [first],
    ).fetchall()
    batch.changes.customers.extend(customer for _, customer, _ in updated)
    _move("invoices", "settled_invoices", [sequence for sequence, _, paid in updated if paid], cur)
    if len(updated) == len(paid_before):
        return
    reopened = cur.execute(  # rare: a payment after the invoice was paid in full
        f"UPDATE settled_invoices SET paid = settled_invoices.paid + p.amount FROM {rows} p"
        " WHERE settled_invoices.sequence >= ? AND settled_invoices.sequence = p.sequence"
        " AND p.sequence NOT IN (SELECT unnest(?::BIGINT[]))"
        " RETURNING settled_invoices.sequence, settled_invoices.customer_id,"
        " settled_invoices.paid < settled_invoices.amount",
        [first, [sequence for sequence, _, _ in updated]],
    ).fetchall()
    batch.changes.customers.extend(customer for _, customer, _ in reopened)
    _move("settled_invoices", "invoices", [sequence for sequence, _, o in reopened if o], cur)


def _move(source: str, target: str, sequences: list[int], cur: Cursor) -> None:
    """Move the invoices with these sequences from one table to the other.

    The sequences (integers, the UPDATE's RETURNING) are written into the SQL as a
    constant list: DuckDB filters the scan with it and skips the row groups outside its
    range, where a join with the batch's payments read every open invoice from the
    oldest one paid (~5 ms a batch at 1,000 events/s).
    """
    if not sequences:
        return
    rows = f"sequence IN ({', '.join(f'{s:d}' for s in sequences)})"
    cur.execute(f"INSERT INTO {target} BY NAME SELECT * FROM {source} WHERE {rows}")
    cur.execute(f"DELETE FROM {source} WHERE {rows}")


def _insert_invoices(batch: Batch, invoices: list[Accepted], paid_now: dict[str, Decimal]) -> None:
    """Raw rows and open items of new invoices, with payments that waited for them."""
    for event in invoices:
        batch.add_key("i:" + event.data.invoice_id, event.sequence)
    customers = [e.data.customer_id for e in invoices]
    fields: dict[str, Kind] = {
        "invoice_id": strings,
        "customer_id": strings,
        "order_id": strings,
        "amount": amounts,
        "issued_on": dates,
        "due_date": dates,
    }
    issued = event_table(invoices, fields)
    batch.insert("invoice_events", issued)
    batch.changes.customers.extend(customers)
    paid = [paid_now.get(e.data.invoice_id, Decimal(0)) for e in invoices]
    if not any(("q:" + e.data.invoice_id) in batch.found for e in invoices):
        # Each new invoice is open or, paid in full as it arrived, settled: plain
        # inserts of the batch's rows.
        items = {k: c for k, c in issued.items() if k not in ("event_id", "time")}
        items["paid"] = sums(paid)
        settled = np.array([p >= e.data.amount for p, e in zip(paid, invoices, strict=True)], bool)
        for table, chosen in (("invoices", ~settled), ("settled_invoices", settled)):
            if chosen.any():
                batch.insert(table, take(items, chosen))
        return
    # Rare: payments that arrived before their invoice count now.
    issued = {**issued, "paid_now": sums(paid)}
    batch_invoices = values(issued)  # noqa: F841 - read by DuckDB below
    rows = scan(issued, "batch_invoices")
    arrived = (
        "SELECT b.invoice_id, b.sequence, b.customer_id, b.order_id, b.amount, b.issued_on,"
        " b.due_date, b.paid_now + coalesce(p.amount, 0) AS paid, b.site"
        f" FROM {rows} b LEFT JOIN (SELECT invoice_id, sum(amount) AS amount"
        f" FROM pending_payments WHERE invoice_id IN (SELECT invoice_id FROM {rows})"
        " GROUP BY invoice_id) p USING (invoice_id)"
    )
    cur = batch.cur
    # Each new invoice is open or, paid in full before or as it arrived, settled.
    cur.execute(f"INSERT INTO invoices BY NAME SELECT * FROM ({arrived}) WHERE paid < amount")
    cur.execute(
        f"INSERT INTO settled_invoices BY NAME SELECT * FROM ({arrived}) WHERE paid >= amount"
    )
    cur.execute(f"DELETE FROM pending_payments WHERE invoice_id IN (SELECT invoice_id FROM {rows})")


#: Columns of ``invoices`` copied from ``invoice_events`` (``paid`` is computed).
INVOICE_COLUMNS = "invoice_id, sequence, customer_id, order_id, amount, issued_on, due_date, site"


def rebuild(history: History) -> None:
    """Open and settled invoices, waiting payments and invoice keys from every invoice
    and payment: what is paid is the sum of the invoice's payments, whenever they came,
    and it is open while that is below its amount, as in ``apply``.
    """
    cur = history.cur
    invoices, payments = history.of("invoice_events"), history.of("payment_events")
    paid = (
        f"SELECT {INVOICE_COLUMNS}, coalesce(p.paid, 0) AS paid FROM {invoices}"
        f" LEFT JOIN (SELECT invoice_id, sum(amount) AS paid FROM {payments}"
        " GROUP BY invoice_id) p USING (invoice_id)"
    )
    cur.execute(f"INSERT INTO invoices BY NAME SELECT * FROM ({paid}) WHERE paid < amount")
    cur.execute(f"INSERT INTO settled_invoices BY NAME SELECT * FROM ({paid}) WHERE paid >= amount")
    waiting = (
        f"SELECT invoice_id, sequence, amount FROM {payments}"
        f" WHERE invoice_id NOT IN (SELECT invoice_id FROM {invoices})"
    )
    cur.execute(f"INSERT INTO pending_payments BY NAME {waiting}")
    history.add_keys(f"SELECT 'i:' || invoice_id AS key, sequence FROM {invoices}")
    history.add_keys(f"SELECT 'q:' || invoice_id AS key, sequence FROM ({waiting})")


# Named queries ----------------------------------------------------------------------

_OPEN_ITEMS = (
    "SELECT i.invoice_id, i.customer_id, c.name AS customer_name, i.order_id, i.amount,"
    " i.paid, i.amount - i.paid AS balance, i.issued_on, i.due_date,"
    " (?::DATE - i.due_date) AS days_overdue,"
    " CASE WHEN days_overdue <= 0 THEN 'current' WHEN days_overdue <= 30 THEN '1-30'"
    " WHEN days_overdue <= 60 THEN '31-60' WHEN days_overdue <= 90 THEN '61-90'"
    " ELSE 'over-90' END AS bucket"
    " FROM invoices i LEFT JOIN customers c USING (customer_id)"
    " WHERE i.paid < i.amount AND (?::VARCHAR IS NULL OR i.site = ?)"
)
#: Each open invoice's customer, balance and days overdue (as of, then the site twice):
#: what the aging sums. Names are joined after the sums, to the customers listed only.
_BALANCES = (
    "SELECT customer_id, amount - paid AS balance, (?::DATE - due_date) AS days_overdue"
    " FROM invoices WHERE paid < amount AND (?::VARCHAR IS NULL OR site = ?)"
)
_BUCKETS = (
    "sum(balance) FILTER (WHERE days_overdue <= 0) AS current_balance,"
    " sum(balance) FILTER (WHERE days_overdue BETWEEN 1 AND 30) AS days_1_30,"
    " sum(balance) FILTER (WHERE days_overdue BETWEEN 31 AND 60) AS days_31_60,"
    " sum(balance) FILTER (WHERE days_overdue BETWEEN 61 AND 90) AS days_61_90,"
    " sum(balance) FILTER (WHERE days_overdue > 90) AS over_90,"
    " sum(balance) AS total, count(*) AS open_invoices"
)
_BUCKET_KEYS = ("current", "days_1_30", "days_31_60", "days_61_90", "over_90", "total")
#: The overall buckets alone (``customer_limit`` 0): one pass, no grouping by customer.
_AGING_TOTAL = f"SELECT {_BUCKETS} FROM ({_BALANCES})"
# One scan: the grand total is the grouping set (), sorted first (customer_id is NULL
# only there; the column is NOT NULL), then the largest customers, then their names.
_AGING_BY_CUSTOMER = (
    f"SELECT a.customer_id, c.name, a.* EXCLUDE (customer_id) FROM (SELECT customer_id,"
    f" {_BUCKETS} FROM ({_BALANCES}) GROUP BY GROUPING SETS ((customer_id), ())"
    " ORDER BY customer_id IS NOT NULL, total DESC, customer_id LIMIT ?) a"
    " LEFT JOIN customers c USING (customer_id)"
    " ORDER BY a.customer_id IS NOT NULL, a.total DESC, a.customer_id"
)


def _buckets(row: tuple[Any, ...]) -> dict[str, Any]:
    shaped: dict[str, Any] = {
        key: money(value) for key, value in zip(_BUCKET_KEYS, row[:6], strict=True)
    }
    shaped["open_invoices"] = int(row[6] or 0)
    return shaped


@implements(registry.AR_AGING)
def ar_aging(
    cur: duckdb.DuckDBPyConnection, params: registry.AgingParams, context: QueryContext
) -> QueryResult[registry.AgingRow]:
    """Open balances by aging bucket, overall and per customer (none with limit 0)."""
    as_of = params.as_of or context.today_utc()
    balances = [as_of, params.site, params.site]
    if not params.customer_limit:
        total = cur.execute(_AGING_TOTAL, balances).fetchone()
        assert total is not None
        return QueryResult(registry.AgingRow(as_of=as_of, **_buckets(total), by_customer=[]))
    rows = cur.execute(_AGING_BY_CUSTOMER, [*balances, params.customer_limit + 1]).fetchall()
    total = rows[0][2:] if rows and rows[0][0] is None else (None,) * 7
    by_customer = [
        registry.CustomerAgingRow(customer_id=row[0], customer_name=row[1], **_buckets(row[2:]))
        for row in rows
        if row[0] is not None
    ]
    return QueryResult(registry.AgingRow(as_of=as_of, **_buckets(total), by_customer=by_customer))


_OVERDUE = (
    f"SELECT * FROM ({_OPEN_ITEMS}) WHERE days_overdue >= ? "
    "AND (?::VARCHAR IS NULL OR customer_id = ?) ORDER BY days_overdue DESC, invoice_id"
)


@implements(registry.OVERDUE_INVOICES)
def overdue_invoices(cur: Cursor, params: registry.OverdueParams, context: QueryContext) -> Select:
    """Open invoices at least ``min_days_overdue`` days past due, most overdue first."""
    as_of, customer = params.as_of or context.today_utc(), params.customer_id
    arguments = [as_of, params.site, params.site, params.min_days_overdue, customer, customer]
    return Select(_OVERDUE, arguments)
