"""What the aggregates must show after a run, worked out in plain Python from the messages.

This applies docs/EVENTS.md's rules on its own (JetStream's duplicate window, validation,
held cancellations and payments, duplicates as no-ops) without sharing code or SQL
with the materializer, so comparing the two checks the materializer against the rules.
Results have the shapes of docs/API.md's named queries.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from pulse_bi.simulator.events import SimMessage, stored_by_stream
from pulse_bi.simulator.rules import ContractError, Event, validate

CENT = Decimal("0.01")
ZERO = Decimal(0)
TOP_PRODUCTS_LIMIT = 10
CUSTOMER_LIMIT = 100
MIN_DAYS_OVERDUE = 1


def money(value: Decimal) -> str:
    """Money as the named queries print it: a string with two decimals."""
    return format(value.quantize(CENT, rounding=ROUND_HALF_UP) + ZERO, "f")


@dataclass(slots=True)
class _Hour:
    orders: int = 0
    cancelled_orders: int = 0
    gross: Decimal = ZERO
    cancelled: Decimal = ZERO
    units: int = 0

    def add(self, other: _Hour) -> None:
        self.orders += other.orders
        self.cancelled_orders += other.cancelled_orders
        self.gross += other.gross
        self.cancelled += other.cancelled
        self.units += other.units

    def row(self, key: str, value: str) -> dict[str, Any]:
        net = self.gross - self.cancelled
        kept = self.orders - self.cancelled_orders
        return {
            key: value,
            "orders": self.orders,
            "cancelled_orders": self.cancelled_orders,
            "gross_revenue": money(self.gross),
            "cancelled_revenue": money(self.cancelled),
            "net_revenue": money(net),
            "units": self.units,
            "average_order_value": money(net / kept if kept else ZERO),
        }


@dataclass(slots=True)
class _Order:
    hour: datetime
    channel: str
    total: Decimal
    lines: list[tuple[str, int, Decimal]]
    cancelled: bool = False


@dataclass(slots=True)
class _Invoice:
    customer_id: str
    order_id: str | None
    amount: Decimal
    issued_on: date
    due_date: date
    paid: Decimal = ZERO


@dataclass
class Ledger:
    """The state the events build, applied one message at a time in stream order."""

    orders: dict[str, _Order] = field(default_factory=dict)
    order_event: dict[str, str] = field(default_factory=dict)
    held_cancels: set[str] = field(default_factory=set)
    hours: dict[tuple[datetime, str], _Hour] = field(default_factory=dict)
    invoices: dict[str, _Invoice] = field(default_factory=dict)
    held_payments: defaultdict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    stock: defaultdict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    last_movement: dict[tuple[str, str], datetime] = field(default_factory=dict)
    products: dict[str, dict[str, Any]] = field(default_factory=dict)
    customers: dict[str, str] = field(default_factory=dict)
    seen_ids: set[str] = field(default_factory=set)
    applied: int = 0
    rejected: int = 0
    duplicates: int = 0
    reasons: list[str] = field(default_factory=list)

    def apply(self, subject: str, raw: bytes) -> None:
        """Apply one message that reached the stream."""
        try:
            event = validate(subject, raw)
            if event.id in self.seen_ids:
                self.duplicates += 1  # a re-delivery of an event already applied
                return
            if event.type == "order.created":
                first = self.order_event.get(event.data["order_id"])
                if first is not None:
                    raise ContractError(f"order_id already created by event {first!r}")
        except ContractError as error:
            self.rejected += 1
            self.reasons.append(str(error))
            return
        self.seen_ids.add(event.id)
        self.applied += 1
        getattr(self, "_" + event.type.replace(".", "_"))(event)

    def _order_created(self, event: Event) -> None:
        time, data = event.time, event.data
        hour = time.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        lines = [(line["sku"], line["quantity"], line["unit_price"]) for line in data["lines"]]
        order = _Order(hour, data["channel"], data["total_amount"], lines)
        self.orders[data["order_id"]] = order
        self.order_event[data["order_id"]] = event.id
        bucket = self.hours.setdefault((hour, order.channel), _Hour())
        bucket.orders += 1
        bucket.gross += order.total
        bucket.units += sum(quantity for _, quantity, _ in lines)
        if data["order_id"] in self.held_cancels:
            self.held_cancels.discard(data["order_id"])
            self._cancel(order)

    def _order_cancelled(self, event: Event) -> None:
        data = event.data
        order = self.orders.get(data["order_id"])
        if order is None:
            self.held_cancels.add(data["order_id"])  # applied when its order arrives
        else:
            self._cancel(order)

    def _cancel(self, order: _Order) -> None:
        if order.cancelled:
            return  # cancelling twice counts once
        order.cancelled = True
        bucket = self.hours[order.hour, order.channel]
        bucket.cancelled_orders += 1
        bucket.cancelled += order.total

    def _invoice_issued(self, event: Event) -> None:
        data = event.data
        invoice_id = data["invoice_id"]
        previous = self.invoices.get(invoice_id)
        paid = previous.paid if previous else self.held_payments.pop(invoice_id, ZERO)
        self.invoices[invoice_id] = _Invoice(
            data["customer_id"],
            data.get("order_id"),
            data["amount"],
            data["issued_on"],
            data["due_date"],
            paid,
        )

    def _payment_received(self, event: Event) -> None:
        data = event.data
        invoice = self.invoices.get(data["invoice_id"])
        if invoice is None:
            self.held_payments[data["invoice_id"]] += data["amount"]  # counts once it arrives
        else:
            invoice.paid += data["amount"]

    def _stock_moved(self, event: Event) -> None:
        time, data = event.time, event.data
        key = (data["sku"], data["warehouse"])
        self.stock[key] += data["quantity_delta"]
        utc = time.astimezone(UTC)
        if key not in self.last_movement or utc > self.last_movement[key]:
            self.last_movement[key] = utc

    def _product_updated(self, event: Event) -> None:
        data = event.data
        self.products[data["sku"]] = data

    def _customer_updated(self, event: Event) -> None:
        data = event.data
        self.customers[data["customer_id"]] = data["name"]

    # -- results in the shapes of docs/API.md -----------------------------------------

    def sales_by_hour(self, channel: str | None = None) -> list[dict[str, Any]]:
        """Rows of ``sales_by_hour`` (all channels, or one), ordered by hour."""
        merged: dict[datetime, _Hour] = {}
        for (hour, bucket_channel), bucket in self.hours.items():
            if channel is not None and bucket_channel != channel:
                continue
            merged.setdefault(hour, _Hour()).add(bucket)
        return [merged[hour].row("hour", hour.isoformat()) for hour in sorted(merged)]

    def sales_by_channel(self) -> list[dict[str, Any]]:
        """Rows of ``sales_by_channel`` over all time: by net revenue desc, then channel."""
        merged: dict[str, _Hour] = {}
        for (_, channel), bucket in self.hours.items():
            merged.setdefault(channel, _Hour()).add(bucket)
        order = sorted(merged, key=lambda c: (-(merged[c].gross - merged[c].cancelled), c))
        return [merged[channel].row("channel", channel) for channel in order]

    def stock_levels(self) -> list[dict[str, Any]]:
        """Rows of ``stock_levels``, ordered by sku, warehouse."""
        rows = []
        for sku, warehouse in sorted(self.stock):
            product = self.products.get(sku)
            on_hand = self.stock[sku, warehouse]
            reorder_point = product["reorder_point"] if product else 0
            rows.append(
                {
                    "sku": sku,
                    "warehouse": warehouse,
                    "on_hand": on_hand,
                    "reorder_point": reorder_point,
                    "low_stock": reorder_point > 0 and on_hand <= reorder_point,
                    "name": product["name"] if product else None,
                    "category": product["category"] if product else None,
                    "last_movement_at": self.last_movement[sku, warehouse].isoformat(),
                }
            )
        return rows

    def low_stock(self) -> list[dict[str, Any]]:
        """Rows of ``low_stock``: by on_hand - reorder_point, then sku, warehouse."""
        low = [row for row in self.stock_levels() if row["low_stock"]]
        return sorted(
            low, key=lambda r: (r["on_hand"] - r["reorder_point"], r["sku"], r["warehouse"])
        )

    def top_products(self, limit: int = TOP_PRODUCTS_LIMIT) -> list[dict[str, Any]]:
        """Rows of ``top_products`` over all time, net of cancelled orders."""
        units: defaultdict[str, int] = defaultdict(int)
        revenue: defaultdict[str, Decimal] = defaultdict(Decimal)
        for order in self.orders.values():
            # A product sold only in cancelled orders still ranks, with zero units.
            kept = 0 if order.cancelled else 1
            for sku, quantity, price in order.lines:
                units[sku] += kept * quantity
                revenue[sku] += kept * quantity * price
        ranked = sorted(units, key=lambda sku: (-revenue[sku], sku))[:limit]
        return [
            {
                "sku": sku,
                "name": self.products[sku]["name"] if sku in self.products else None,
                "category": self.products[sku]["category"] if sku in self.products else None,
                "units": units[sku],
                "revenue": money(revenue[sku]),
            }
            for sku in ranked
        ]

    def open_invoices(self, as_of: date) -> list[tuple[str, _Invoice, int]]:
        """(invoice_id, invoice, days overdue) of every invoice with a balance left."""
        return [
            (invoice_id, invoice, (as_of - invoice.due_date).days)
            for invoice_id, invoice in self.invoices.items()
            if invoice.amount - invoice.paid > 0
        ]

    def ar_aging(self, as_of: date, customer_limit: int = CUSTOMER_LIMIT) -> dict[str, Any]:
        """The ``ar_aging`` object: buckets overall and per customer."""
        overall = _Aging()
        per_customer: defaultdict[str, _Aging] = defaultdict(_Aging)
        for _, invoice, days in self.open_invoices(as_of):
            balance = invoice.amount - invoice.paid
            overall.add(days, balance)
            per_customer[invoice.customer_id].add(days, balance)
        ranked = sorted(per_customer, key=lambda c: (-per_customer[c].total, c))[:customer_limit]
        by_customer = [
            {"customer_id": c, "customer_name": self.customers.get(c), **per_customer[c].fields()}
            for c in ranked
        ]
        return {"as_of": as_of.isoformat(), **overall.fields(), "by_customer": by_customer}

    def overdue_invoices(
        self, as_of: date, min_days_overdue: int = MIN_DAYS_OVERDUE
    ) -> list[dict[str, Any]]:
        """Rows of ``overdue_invoices``: by days overdue desc, then invoice_id."""
        rows = [
            {
                "invoice_id": invoice_id,
                "customer_id": invoice.customer_id,
                "customer_name": self.customers.get(invoice.customer_id),
                "order_id": invoice.order_id,
                "amount": money(invoice.amount),
                "paid": money(invoice.paid),
                "balance": money(invoice.amount - invoice.paid),
                "issued_on": invoice.issued_on.isoformat(),
                "due_date": invoice.due_date.isoformat(),
                "days_overdue": days,
                "bucket": bucket_of(days),
            }
            for invoice_id, invoice, days in self.open_invoices(as_of)
            if days >= min_days_overdue
        ]
        return sorted(rows, key=lambda r: (-r["days_overdue"], r["invoice_id"]))


def bucket_of(days_overdue: int) -> str:
    """The aging bucket of a number of days overdue."""
    if days_overdue <= 0:
        return "current"
    if days_overdue <= 30:
        return "1-30"
    if days_overdue <= 60:
        return "31-60"
    if days_overdue <= 90:
        return "61-90"
    return "over-90"


_BUCKET_FIELDS = {
    "current": "current",
    "1-30": "days_1_30",
    "31-60": "days_31_60",
    "61-90": "days_61_90",
    "over-90": "over_90",
}


@dataclass(slots=True)
class _Aging:
    buckets: dict[str, Decimal] = field(default_factory=lambda: dict.fromkeys(_BUCKET_FIELDS, ZERO))
    total: Decimal = ZERO
    open_invoices: int = 0

    def add(self, days_overdue: int, balance: Decimal) -> None:
        self.buckets[bucket_of(days_overdue)] += balance
        self.total += balance
        self.open_invoices += 1

    def fields(self) -> dict[str, Any]:
        result: dict[str, Any] = {_BUCKET_FIELDS[b]: money(v) for b, v in self.buckets.items()}
        result.update(total=money(self.total), open_invoices=self.open_invoices)
        return result


def expected_aggregates(messages: Iterable[SimMessage], *, as_of: date) -> dict[str, Any]:
    """Expected named-query results and message counts after publishing ``messages``.

    Assumes the whole run fits in the stream's duplicate window, as a counted run does:
    a message whose Nats-Msg-Id was already stored never reaches the stream.
    """
    ledger = Ledger()
    published = in_stream = 0

    def counted() -> Iterator[SimMessage]:
        nonlocal published
        for message in messages:
            published += 1
            yield message

    for message in stored_by_stream(counted()):
        in_stream += 1
        ledger.apply(message.subject, message.data)
    channels = sorted({channel for _, channel in ledger.hours})
    return {
        "sales_by_hour": ledger.sales_by_hour(),
        "sales_by_hour_by_channel": {c: ledger.sales_by_hour(c) for c in channels},
        "sales_by_channel": ledger.sales_by_channel(),
        "stock_levels": ledger.stock_levels(),
        "low_stock": ledger.low_stock(),
        "ar_aging": ledger.ar_aging(as_of),
        "overdue_invoices": ledger.overdue_invoices(as_of),
        "top_products": ledger.top_products(),
        "counts": {
            "published": published,
            "in_stream": in_stream,
            "applied": ledger.applied,
            "rejected": ledger.rejected,
            "duplicates": ledger.duplicates,
        },
    }
