"""The event contract: CloudEvents envelopes and typed data, decoded and validated.

Decoding is the hot path of ingest, so a valid message costs one msgspec decode (a
tagged union of typed envelopes, keyed by ``type``) plus a few checks msgspec cannot
express (money scale, time zone, subject). Anything that fails goes through a slower
two-step decode (the envelope with ``data`` left raw, then the typed data) that says
precisely what is wrong: a ``Rejection`` with a short, stable reason. Nothing here
raises.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal, Union

import msgspec

from pulse_bi.contract import EVENT_SUBJECT_PREFIX

Id = Annotated[str, msgspec.Meta(min_length=1)]
#: Quantities are integers; the bound keeps them inside BIGINT arithmetic.
Quantity = Annotated[int, msgspec.Meta(ge=-1_000_000_000, le=1_000_000_000)]
PositiveQuantity = Annotated[int, msgspec.Meta(gt=0, le=1_000_000_000)]
NonNegativeQuantity = Annotated[int, msgspec.Meta(ge=0, le=1_000_000_000)]

#: DECIMAL(18,2) holds 16 integer digits.
MONEY_LIMIT = Decimal("1e16")


class Envelope(msgspec.Struct, gc=False):
    """A CloudEvents 1.0 envelope in structured JSON mode; ``data`` is decoded later."""

    specversion: str
    id: Id
    source: Id
    type: Id
    time: datetime
    data: msgspec.Raw
    datacontenttype: str | None = None


class OrderLine(msgspec.Struct, gc=False):
    """One line of a created order."""

    sku: Id
    quantity: PositiveQuantity
    unit_price: Decimal


class OrderCreated(msgspec.Struct, gc=False):
    """Data of ``order.created``."""

    order_id: Id
    customer_id: Id
    channel: Id
    total_amount: Decimal
    lines: list[OrderLine]


class OrderCancelled(msgspec.Struct, gc=False):
    """Data of ``order.cancelled``."""

    order_id: Id
    reason: str


class InvoiceIssued(msgspec.Struct, gc=False):
    """Data of ``invoice.issued``."""

    invoice_id: Id
    customer_id: Id
    amount: Decimal
    issued_on: date
    due_date: date
    order_id: str | None = None


class PaymentReceived(msgspec.Struct, gc=False):
    """Data of ``payment.received``."""

    payment_id: Id
    invoice_id: Id
    amount: Decimal


class StockMoved(msgspec.Struct, gc=False):
    """Data of ``stock.moved``."""

    sku: Id
    warehouse: Id
    quantity_delta: Quantity
    reason: Literal["receipt", "shipment", "adjustment", "return"]


class ProductUpdated(msgspec.Struct, gc=False):
    """Data of ``product.updated``."""

    sku: Id
    name: str
    category: str
    reorder_point: NonNegativeQuantity
    unit_cost: Decimal


class CustomerUpdated(msgspec.Struct, gc=False):
    """Data of ``customer.updated``."""

    customer_id: Id
    name: str


def _money(value: Decimal, field: str) -> str | None:
    """Why a money value is unacceptable, or None when it is fine."""
    try:
        # Fast path: one quantize and two comparisons (NaN and infinities raise here).
        if value == value.quantize(_CENT) and -MONEY_LIMIT < value < MONEY_LIMIT:
            return None
    except InvalidOperation:
        pass
    if not value.is_finite():
        return f"data.{field}: not a finite number"
    if abs(value) >= MONEY_LIMIT:
        return f"data.{field}: out of range"
    return f"data.{field}: more than 2 decimals"


_CENT = Decimal("0.01")


def _check_order(data: OrderCreated) -> str | None:
    problem = _money(data.total_amount, "total_amount")
    if problem is None:
        for index, line in enumerate(data.lines):
            problem = _money(line.unit_price, f"lines[{index}].unit_price")
            if problem is not None:
                break
    return problem


def _check_none(data: Any) -> str | None:
    return None


def _check_invoice(data: InvoiceIssued) -> str | None:
    return _money(data.amount, "amount")


def _check_payment(data: PaymentReceived) -> str | None:
    return _money(data.amount, "amount")


def _check_product(data: ProductUpdated) -> str | None:
    return _money(data.unit_cost, "unit_cost")


class EventType(msgspec.Struct, frozen=True):
    """One event type of the contract: its subject and how its data is decoded."""

    name: str
    subject: str
    data_type: type
    decoder: msgspec.json.Decoder[Any]
    check: Any  # Callable[[data], str | None]: checks msgspec cannot express


def _event_type(name: str, suffix: str, data: type, check: Any) -> EventType:
    return EventType(name, EVENT_SUBJECT_PREFIX + suffix, data, msgspec.json.Decoder(data), check)


#: Every event type of the contract by its CloudEvents ``type``.
EVENT_TYPES: dict[str, EventType] = {
    t.name: t
    for t in (
        _event_type("order.created", "orders.created", OrderCreated, _check_order),
        _event_type("order.cancelled", "orders.cancelled", OrderCancelled, _check_none),
        _event_type("invoice.issued", "invoices.issued", InvoiceIssued, _check_invoice),
        _event_type("payment.received", "payments.received", PaymentReceived, _check_payment),
        _event_type("stock.moved", "stock.moved", StockMoved, _check_none),
        _event_type("product.updated", "products.updated", ProductUpdated, _check_product),
        _event_type("customer.updated", "customers.updated", CustomerUpdated, _check_none),
    )
}


def _typed_envelope(event_type: EventType) -> type:
    """An envelope Struct for one type, tagged by ``type``: one decode does it all."""
    return msgspec.defstruct(
        "Envelope_" + event_type.name.replace(".", "_"),
        [
            ("specversion", str),
            ("id", Id),
            ("source", Id),
            ("time", datetime),
            ("data", event_type.data_type),
            ("datacontenttype", str | None, None),
        ],
        tag_field="type",
        tag=event_type.name,
        gc=False,
    )


_TYPED = {_typed_envelope(t): t for t in EVENT_TYPES.values()}
#: The fast path: a tagged union of every typed envelope. Anything it refuses goes
#: through the two-step decode below, which explains what is wrong.
_fast_decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(Union[tuple(_TYPED)])  # noqa: UP007


class Event(msgspec.Struct, gc=False):
    """A valid event: envelope fields the store needs and its typed data."""

    id: str
    type: str
    time: datetime
    data: Any


class Rejection(msgspec.Struct, gc=False):
    """Why a message is not a valid event, with the id and type when they are known."""

    reason: str
    id: str | None = None
    type: str | None = None


_envelope_decoder = msgspec.json.Decoder(Envelope)
_MISSING = re.compile(r"Object missing required field `(\w+)`(?: - at `\$(.*)`)?")
_AT = re.compile(r"^(.*?) - at `\$(.*)`$")
_BACKTICK = re.compile(r"`([^`]*)`")
_LIST_NAME = re.compile(r"\blist\b")


def _explain(error: msgspec.ValidationError, root: str) -> str:
    """Turn a msgspec validation message into ``<path>: <problem>``.

    ``root`` is ``"data"`` for event data and ``""`` for the envelope.
    """
    message = str(error)
    missing = _MISSING.fullmatch(message)
    if missing is not None:
        field, where = missing.group(1), (missing.group(2) or "")
        place = (root + where) if (root + where) else ""
        return f"{place}: missing '{field}'" if place else f"missing '{field}'"
    at = _AT.match(message)
    problem, where = (at.group(1), at.group(2)) if at else (message, "")
    problem = _BACKTICK.sub(r"\1", problem)
    problem = _LIST_NAME.sub("array", problem[:1].lower() + problem[1:])
    path = (root + where).lstrip(".")
    return f"{path}: {problem}" if path else problem


def decode(subject: str, payload: bytes) -> Event | Rejection:
    """Decode and validate one message; never raises."""
    try:
        envelope = _fast_decoder.decode(payload)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return _decode_slowly(subject, payload)
    event_type = _TYPED[type(envelope)]
    if (
        envelope.specversion != "1.0"
        or envelope.time.tzinfo is None
        or subject != event_type.subject
    ):
        return _decode_slowly(subject, payload)
    problem = event_type.check(envelope.data)
    if problem is not None:
        return Rejection(problem, envelope.id, event_type.name)
    return Event(envelope.id, event_type.name, envelope.time, envelope.data)


def _decode_slowly(subject: str, payload: bytes) -> Event | Rejection:
    """Envelope first, then data: slower, but says precisely what is wrong."""
    try:
        envelope = _envelope_decoder.decode(payload)
    except msgspec.ValidationError as error:
        return _envelope_rejection(payload, error)
    except msgspec.DecodeError as error:
        return Rejection(f"invalid JSON: {_detail(error)}")
    event_type = EVENT_TYPES.get(envelope.type)
    if event_type is None:
        return Rejection(f"unknown event type '{envelope.type}'", envelope.id, envelope.type)
    if envelope.specversion != "1.0":
        return Rejection(
            f"not a CloudEvent: specversion '{envelope.specversion}' is not '1.0'",
            envelope.id,
            envelope.type,
        )
    if envelope.time.tzinfo is None:
        return Rejection("time has no timezone", envelope.id, envelope.type)
    if subject != event_type.subject:
        return Rejection(
            f"type '{envelope.type}' does not match subject '{subject}'",
            envelope.id,
            envelope.type,
        )
    try:
        data = event_type.decoder.decode(envelope.data)
    except msgspec.ValidationError as error:
        return Rejection(_explain(error, "data"), envelope.id, envelope.type)
    except msgspec.DecodeError as error:  # pragma: no cover - the envelope was valid JSON
        return Rejection(f"invalid JSON: {_detail(error)}", envelope.id, envelope.type)
    problem = event_type.check(data)
    if problem is not None:
        return Rejection(problem, envelope.id, envelope.type)
    return Event(envelope.id, envelope.type, envelope.time, data)


def _detail(error: Exception) -> str:
    return _BACKTICK.sub(r"\1", str(error))


_partial_decoder = msgspec.json.Decoder()


def _envelope_rejection(payload: bytes, error: msgspec.ValidationError) -> Rejection:
    """A rejection for a JSON document that is not a valid envelope.

    The id and type are recovered when present so the rejection can be traced.
    """
    document = _partial_decoder.decode(payload)
    if not isinstance(document, dict):
        return Rejection("not a CloudEvent: expected a JSON object")
    event_id = document.get("id") if isinstance(document.get("id"), str) else None
    event_type = document.get("type") if isinstance(document.get("type"), str) else None
    reason = _explain(error, "")
    if reason.startswith("time: invalid"):
        return Rejection("time: invalid RFC 3339 date-time", event_id, event_type)
    if reason.startswith("time:"):
        return Rejection(reason, event_id, event_type)
    return Rejection(f"not a CloudEvent: {reason}", event_id, event_type)
