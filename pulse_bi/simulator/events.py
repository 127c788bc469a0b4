"""CloudEvents of the Pulse ERP event contract, encoded as the NATS messages that carry them."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

import msgspec

from pulse_bi.contract import EVENT_SUBJECT_PREFIX

#: event type → (subject suffix, CloudEvent source), as in the contract's table.
EVENT_TYPES: dict[str, tuple[str, str]] = {
    "order.created": ("orders.created", "/orders"),
    "order.cancelled": ("orders.cancelled", "/orders"),
    "invoice.issued": ("invoices.issued", "/billing"),
    "payment.received": ("payments.received", "/billing"),
    "stock.moved": ("stock.moved", "/inventory"),
    "product.updated": ("products.updated", "/catalog"),
    "customer.updated": ("customers.updated", "/customers"),
}

MessageKind = Literal["event", "bad", "duplicate"]

#: Duplicate flavours. ``same_msg_id``: re-sent with the same Nats-Msg-Id inside the
#: stream's duplicate window, so JetStream drops it. ``no_msg_id``: re-sent without the
#: header, standing for a re-publish after the window: it reaches the stream and the
#: consumer must treat the repeated event id as a no-op.
DUPLICATE_SAME_MSG_ID = "same_msg_id"
DUPLICATE_NO_MSG_ID = "no_msg_id"

# Money goes out as JSON numbers written from the exact decimal text (``12.30``), never
# through a binary float.
_encoder = msgspec.json.Encoder(decimal_format="number")


@dataclass(frozen=True, slots=True)
class SimMessage:
    """One NATS message as the simulator publishes it."""

    subject: str
    data: bytes
    #: Value of the Nats-Msg-Id header; None publishes without the header.
    msg_id: str | None
    #: ``event`` (valid), ``bad`` (must be rejected) or ``duplicate`` (a re-send).
    kind: MessageKind = "event"
    #: The bad-input kind for ``bad``, the duplicate flavour for ``duplicate``.
    detail: str = ""

    @property
    def headers(self) -> dict[str, str] | None:
        """NATS headers to publish with."""
        return {"Nats-Msg-Id": self.msg_id} if self.msg_id is not None else None

    @property
    def dropped_by_stream(self) -> bool:
        """True when JetStream's duplicate window discards this message."""
        return self.kind == "duplicate" and self.detail == DUPLICATE_SAME_MSG_ID


def stored_by_stream(messages: Iterable[SimMessage]) -> Iterator[SimMessage]:
    """The messages JetStream stores, in order, when a run fits in its duplicate window.

    A message whose Nats-Msg-Id was already stored is dropped; one without the header
    is always stored.
    """
    stored_ids: set[str] = set()
    for message in messages:
        if message.msg_id is not None:
            if message.msg_id in stored_ids:
                continue
            stored_ids.add(message.msg_id)
        yield message


# One string per subject, shared by every message (a large scenario holds millions).
_SUBJECTS = {t: EVENT_SUBJECT_PREFIX + suffix for t, (suffix, _) in EVENT_TYPES.items()}


def subject_for(event_type: str) -> str:
    """The NATS subject an event type is published on."""
    return _SUBJECTS[event_type]


def format_time(moment: datetime) -> str:
    """ISO-8601 with its offset, ``Z`` for UTC (the form most producers send)."""
    text = moment.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def envelope(event_type: str, event_id: str, time: str, data: Any) -> dict[str, Any]:
    """A CloudEvents 1.0 structured-mode envelope."""
    source = EVENT_TYPES[event_type][1] if event_type in EVENT_TYPES else "/erp"
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": source,
        "type": event_type,
        "time": time,
        "datacontenttype": "application/json",
        "data": data,
    }


def encode(document: Any) -> bytes:
    """JSON bytes of a document; Decimal values become JSON numbers."""
    return _encoder.encode(document)


def cloud_event(
    event_type: str, data: dict[str, Any], *, event_id: str, time: datetime | str
) -> SimMessage:
    """A valid event message: CloudEvent JSON on its subject, Nats-Msg-Id = event id."""
    stamp = time if isinstance(time, str) else format_time(time)
    body = encode(envelope(event_type, event_id, stamp, data))
    return SimMessage(subject_for(event_type), body, event_id)


def money(value: Decimal, as_string: bool) -> Decimal | str:
    """Money as a JSON number or, as some producers send it, a decimal string."""
    return str(value) if as_string else value


# Builders of each event's data, used by the generator and by hand-written scenarios.


def order_created(
    order_id: str,
    customer_id: str,
    channel: str,
    lines: list[tuple[str, int, Decimal]],
    *,
    total_amount: Decimal | None = None,
    strings: bool = False,
) -> dict[str, Any]:
    """Data of order.created; total_amount defaults to the sum of the lines."""
    total = total_amount if total_amount is not None else sum(q * p for _, q, p in lines)
    return {
        "order_id": order_id,
        "customer_id": customer_id,
        "channel": channel,
        "total_amount": money(Decimal(total), strings),
        "lines": [
            {"sku": sku, "quantity": qty, "unit_price": money(price, strings)}
            for sku, qty, price in lines
        ],
    }


def order_cancelled(order_id: str, reason: str) -> dict[str, Any]:
    """Data of order.cancelled."""
    return {"order_id": order_id, "reason": reason}


def invoice_issued(
    invoice_id: str,
    customer_id: str,
    amount: Decimal,
    issued_on: str,
    due_date: str,
    *,
    order_id: str | None = None,
    strings: bool = False,
) -> dict[str, Any]:
    """Data of invoice.issued (order_id only when the invoice bills an order)."""
    data: dict[str, Any] = {"invoice_id": invoice_id, "customer_id": customer_id}
    if order_id is not None:
        data["order_id"] = order_id
    data.update(amount=money(amount, strings), issued_on=issued_on, due_date=due_date)
    return data


def payment_received(
    payment_id: str, invoice_id: str, amount: Decimal, *, strings: bool = False
) -> dict[str, Any]:
    """Data of payment.received."""
    return {"payment_id": payment_id, "invoice_id": invoice_id, "amount": money(amount, strings)}


def stock_moved(sku: str, warehouse: str, quantity_delta: int, reason: str) -> dict[str, Any]:
    """Data of stock.moved (shipments carry a negative delta)."""
    return {"sku": sku, "warehouse": warehouse, "quantity_delta": quantity_delta, "reason": reason}


def product_updated(
    sku: str,
    name: str,
    category: str,
    reorder_point: int,
    unit_cost: Decimal,
    *,
    strings: bool = False,
) -> dict[str, Any]:
    """Data of product.updated."""
    return {
        "sku": sku,
        "name": name,
        "category": category,
        "reorder_point": reorder_point,
        "unit_cost": money(unit_cost, strings),
    }


def customer_updated(customer_id: str, name: str) -> dict[str, Any]:
    """Data of customer.updated."""
    return {"customer_id": customer_id, "name": name}
