"""Builders of raw stream messages for store tests: CloudEvents in stream order."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
from nats.js import JetStreamContext

from materializer.events import EVENT_TYPES
from materializer.store import RawMessage

RECEIVED = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
TIME = "2026-11-25T10:04:05Z"


class Stream:
    """Hands out messages with increasing stream sequences, like JetStream does."""

    def __init__(self, start: int = 1) -> None:
        self.next_sequence = start
        self._ids = itertools.count(1)

    def raw(self, payload: bytes, subject: str = "pulse.events.orders.created") -> RawMessage:
        """A message with any payload."""
        message = RawMessage(self.next_sequence, subject, payload, RECEIVED)
        self.next_sequence += 1
        return message

    def event(
        self,
        event_type: str,
        data: Any,
        *,
        id: str | None = None,
        time: str | None = TIME,
        subject: str | None = None,
        **envelope: Any,
    ) -> RawMessage:
        """A CloudEvent of ``event_type`` on its subject (unless told otherwise)."""
        document: dict[str, Any] = {
            "specversion": "1.0",
            "id": id if id is not None else f"evt-{next(self._ids)}",
            "source": "/tests",
            "type": event_type,
            "datacontenttype": "application/json",
            "data": data,
        }
        if time is not None:
            document["time"] = time
        document.update(envelope)
        if subject is None:
            known = EVENT_TYPES.get(event_type)
            subject = known.subject if known else "pulse.events.unknown.thing"
        return self.raw(msgspec.json.encode(document), subject)

    def order(
        self,
        order_id: str,
        *,
        lines: Sequence[tuple[str, int, str]] = (("SKU-1", 2, "10.00"),),
        total: str | None = None,
        channel: str = "web",
        customer: str = "C-1",
        **kwargs: Any,
    ) -> RawMessage:
        """``order.created``; the total defaults to the sum of quantity * unit price."""
        if total is None:
            cents = sum(quantity * round(float(price) * 100) for _, quantity, price in lines)
            total = f"{cents / 100:.2f}"
        data = {
            "order_id": order_id,
            "customer_id": customer,
            "channel": channel,
            "total_amount": total,
            "lines": [{"sku": s, "quantity": q, "unit_price": p} for s, q, p in lines],
        }
        return self.event("order.created", data, **kwargs)

    def cancel(self, order_id: str, **kwargs: Any) -> RawMessage:
        """``order.cancelled``."""
        return self.event(
            "order.cancelled", {"order_id": order_id, "reason": "changed mind"}, **kwargs
        )

    def invoice(
        self,
        invoice_id: str,
        amount: str,
        *,
        customer: str = "C-1",
        due: str = "2026-11-01",
        issued: str = "2026-10-01",
        order_id: str | None = None,
        **kwargs: Any,
    ) -> RawMessage:
        """``invoice.issued``."""
        data = {
            "invoice_id": invoice_id,
            "customer_id": customer,
            "amount": amount,
            "issued_on": issued,
            "due_date": due,
        }
        if order_id is not None:
            data["order_id"] = order_id
        return self.event("invoice.issued", data, **kwargs)

    def payment(self, payment_id: str, invoice_id: str, amount: str, **kwargs: Any) -> RawMessage:
        """``payment.received``."""
        data = {"payment_id": payment_id, "invoice_id": invoice_id, "amount": amount}
        return self.event("payment.received", data, **kwargs)

    def move(
        self, sku: str, warehouse: str, delta: int, reason: str = "receipt", **kwargs: Any
    ) -> RawMessage:
        """``stock.moved``."""
        data = {"sku": sku, "warehouse": warehouse, "quantity_delta": delta, "reason": reason}
        return self.event("stock.moved", data, **kwargs)

    def product(
        self,
        sku: str,
        *,
        name: str = "Widget",
        category: str = "tools",
        reorder_point: int = 0,
        unit_cost: str = "1.00",
        **kwargs: Any,
    ) -> RawMessage:
        """``product.updated``."""
        data = {
            "sku": sku,
            "name": name,
            "category": category,
            "reorder_point": reorder_point,
            "unit_cost": unit_cost,
        }
        return self.event("product.updated", data, **kwargs)

    def customer(self, customer_id: str, name: str, **kwargs: Any) -> RawMessage:
        """``customer.updated``."""
        return self.event("customer.updated", {"customer_id": customer_id, "name": name}, **kwargs)


DAY = {"from": "2026-11-25T00:00:00+00:00", "to": "2026-11-26T00:00:00+00:00"}


async def publish(js: JetStreamContext, messages: Any) -> int:
    """Publish simulated messages (``SimMessage``) in order; the last one's stream sequence."""
    sequence = 0
    for message in messages:
        ack = await js.publish(message.subject, message.data, headers=message.headers)
        sequence = ack.seq
    return sequence
