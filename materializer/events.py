"""The event contract: CloudEvents envelopes and typed data, decoded and validated.

Decoding is the hot path of ingest, so a valid message costs one msgspec decode (a
tagged union of typed envelopes, keyed by ``type``) plus a few checks msgspec cannot
express (money scale, the year window, subject). Anything that fails goes through a slower
two-step decode (the envelope with ``data`` left raw, then the typed data) that says
precisely what is wrong: a ``Rejection`` with a short, stable reason.

Decoding is total: any bytes give an ``Event`` or a ``Rejection``, never an exception
(docs/EVENTS.md, "Limits"). Payload size and JSON nesting are bounded before the decoder
runs, every value the store keeps is bounded by the contract (ids, text, money,
quantities, times and dates), and whatever the decoder may still raise on hostile input
(a 4,300-digit integer, a malformed document) becomes a rejection too.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, ClassVar, Literal, Union

import msgspec

from materializer.limits import (
    MAX_DEPTH,
    MAX_LINES,
    MAX_PAYLOAD_BYTES,
    MONEY_LIMIT,
    TIME_MAX,
    TIME_MIN,
    Id,
    NonNegativeQuantity,
    PositiveQuantity,
    Quantity,
    Text,
    clip,
    date_problem,
    known_id,
    money_problem,
    time_problem,
    too_deep,
)
from pulse_bi.contract import EVENT_SUBJECT_PREFIX

_YEAR_MIN, _YEAR_MAX = TIME_MIN.year, TIME_MAX.year - 1
_CENT = Decimal("0.01")


class Envelope(msgspec.Struct, gc=False):
    """A CloudEvents 1.0 envelope in structured JSON mode; ``data`` is decoded later."""

    specversion: Text
    id: Id
    source: Id
    type: Id
    time: datetime
    data: msgspec.Raw
    datacontenttype: Text | None = None


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
    lines: Annotated[list[OrderLine], msgspec.Meta(max_length=MAX_LINES)]


class OrderCancelled(msgspec.Struct, gc=False):
    """Data of ``order.cancelled``."""

    order_id: Id
    reason: Text


class InvoiceIssued(msgspec.Struct, gc=False):
    """Data of ``invoice.issued``."""

    invoice_id: Id
    customer_id: Id
    amount: Decimal
    issued_on: date
    due_date: date
    order_id: Id | None = None


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
    name: Text
    category: Text
    reorder_point: NonNegativeQuantity
    unit_cost: Decimal


class CustomerUpdated(msgspec.Struct, gc=False):
    """Data of ``customer.updated``."""

    customer_id: Id
    name: Text


class _StrictOrderLine(OrderLine, forbid_unknown_fields=True, gc=False):
    """``OrderLine`` with no field outside the contract (the fast path's, see ``decode``)."""


class _StrictOrderCreated(OrderCreated, forbid_unknown_fields=True, gc=False):
    """``OrderCreated`` with no field outside the contract, nor in its lines."""

    lines: Annotated[list[_StrictOrderLine], msgspec.Meta(max_length=MAX_LINES)]  # type: ignore[assignment]


def _strict(data: type) -> Any:
    """The data type the fast path decodes: no field outside the contract."""
    if data is OrderCreated:
        return _StrictOrderCreated
    return msgspec.defstruct(
        "_Strict" + data.__name__, [], bases=(data,), forbid_unknown_fields=True, gc=False
    )


def _check_order(data: OrderCreated) -> str | None:
    # An order's amounts are most of the money checked: ``money_problem``'s test inline
    # (a call per line cost more than the test), and its exact reasons only on a failure.
    try:
        total = data.total_amount
        if -MONEY_LIMIT < total < MONEY_LIMIT and total == total.quantize(_CENT):
            for line in data.lines:
                price = line.unit_price
                if not (-MONEY_LIMIT < price < MONEY_LIMIT and price == price.quantize(_CENT)):
                    break
            else:
                return None
    except InvalidOperation:  # NaN; the reasons below say which
        pass
    problem = money_problem(data.total_amount, "total_amount")
    if problem is None:
        for index, line in enumerate(data.lines):
            problem = money_problem(line.unit_price, f"lines[{index}].unit_price")
            if problem is not None:
                break
    return problem


def _check_none(data: Any) -> str | None:
    return None


def _check_invoice(data: InvoiceIssued) -> str | None:
    problem = money_problem(data.amount, "amount")
    if problem is None:
        problem = date_problem(data.issued_on, "issued_on")
    if problem is None:
        problem = date_problem(data.due_date, "due_date")
    return problem


def _check_payment(data: PaymentReceived) -> str | None:
    return money_problem(data.amount, "amount")


def _check_product(data: ProductUpdated) -> str | None:
    return money_problem(data.unit_cost, "unit_cost")


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


#: A time with an offset: what the fast path's envelopes take (the others check it).
_AwareTime = Annotated[datetime, msgspec.Meta(tz=True)]


class Event(msgspec.Struct, gc=False):
    """A valid event: the envelope of its type (a subclass per type, ``_typed_envelope``)
    with its typed data; ``type`` is the subclass's CloudEvents type.

    The decoder's own result is the event: no second object per event.
    """

    id: str
    time: datetime
    data: Any
    type: ClassVar[str]


def _typed_envelope(event_type: EventType, *, strict: bool = False) -> Any:
    """An envelope Struct for one type (an ``Event``), tagged by ``type``: one decode
    does it all. ``strict``: no field outside the contract, in the envelope or its data,
    and msgspec checks the specversion and the time's offset too (``decode``)."""
    return msgspec.defstruct(
        ("_Strict" if strict else "") + "Envelope_" + event_type.name.replace(".", "_"),
        [
            ("specversion", Literal["1.0"] if strict else str),
            ("id", Id),
            ("source", Id),
            ("time", _AwareTime if strict else datetime),
            ("data", _strict(event_type.data_type) if strict else event_type.data_type),
            ("datacontenttype", str | None, None),
        ],
        bases=(Event,),
        tag_field="type",
        tag=event_type.name,
        gc=False,
        forbid_unknown_fields=strict,
        namespace={"type": event_type.name},
    )


_TYPED = {
    envelope: t
    for t in EVENT_TYPES.values()
    for envelope in (_typed_envelope(t), _typed_envelope(t, strict=True))
}
_ENVELOPES = {t.name: _typed_envelope(t) for t in EVENT_TYPES.values()}
#: The fast path: a tagged union of every typed envelope. Anything it refuses goes
#: through the two-step decode below, which explains what is wrong.
_fast_decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(
    Union[tuple(e for e in _TYPED if e.__struct_config__.forbid_unknown_fields is False)]  # noqa: UP007
)
#: The fastest path, taken first: the same with no field outside the contract, a
#: specversion of "1.0" and a time with an offset. A document it decodes nests four
#: levels at most (envelope, data, lines, line) and holds valid UTF-8 only (msgspec
#: checks every string it decodes, and there is nothing it skips unread), so the byte
#: checks ``_decode_checked`` starts with cannot fail on it. Whatever it refuses,
#: however (it may even recurse too deep looking for the tag of a deeply nested
#: document), takes ``_decode_checked``: the reasons stay those of the checks in their
#: order.
_strict_decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(
    Union[tuple(e for e in _TYPED if e.__struct_config__.forbid_unknown_fields)]  # noqa: UP007
)
#: For each strict envelope: its type's subject and the checks msgspec cannot express.
_STRICT_CHECKS = {
    envelope: (t.subject, t.check)
    for envelope, t in _TYPED.items()
    if envelope.__struct_config__.forbid_unknown_fields
}


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
    """Decode and validate one message; never raises (any bytes: an Event or a Rejection).

    One function, no call on the way to the usual answer: it runs for every message.
    """
    try:
        size = len(payload)
        if size > MAX_PAYLOAD_BYTES:
            return Rejection(f"payload too large: {size} bytes, the limit is {MAX_PAYLOAD_BYTES}")
        try:
            envelope = _strict_decoder.decode(payload)
        except MemoryError:
            raise
        except Exception:  # any other document (RecursionError too): every check, in order
            return _decode_checked(subject, payload)
        # ``_validated``, less what the strict envelope checked already.
        expected, check = _STRICT_CHECKS[type(envelope)]
        if subject != expected or not _YEAR_MIN < envelope.time.year < _YEAR_MAX:
            return _decode_slowly(subject, payload)
        problem = check(envelope.data)
        if problem is not None:
            return Rejection(problem, envelope.id, envelope.type)
        return envelope  # type: ignore[no-any-return]
    except MemoryError:
        raise  # the machine's fault, not the message's (materializer/faults.py)
    except Exception as error:  # the last line of defence of the rule above
        return Rejection(clip(f"undecodable: {type(error).__name__}: {_detail(error)}"))


def _decode_checked(subject: str, payload: bytes) -> Event | Rejection:
    """``decode`` for a payload within the size limit, checking its bytes first."""
    if not payload.isascii():  # a word-at-a-time scan; most events are ASCII
        # JSON is UTF-8 (RFC 8259). msgspec checks the strings it reads, but skips the
        # keys of unknown fields unread: check every byte.
        try:
            payload.decode()
        except UnicodeDecodeError as error:
            return Rejection(f"invalid JSON: invalid UTF-8 at byte {error.start}")
    # Fewer brackets than the limit cannot nest deeper than it (every event of the
    # contract short of a 60-line order): two counts, and no call on the hot path.
    if payload.count(b"{") + payload.count(b"[") > MAX_DEPTH and too_deep(payload):
        return Rejection(f"invalid JSON: nested deeper than {MAX_DEPTH} levels")
    try:
        envelope = _fast_decoder.decode(payload)
    except msgspec.DecodeError:  # and its subclass ValidationError
        return _decode_slowly(subject, payload)
    return _validated(subject, payload, envelope)


def _validated(subject: str, payload: bytes, envelope: Any) -> Event | Rejection:
    """A typed envelope's checks that msgspec cannot express."""
    event_type = _TYPED[type(envelope)]
    time = envelope.time
    if (
        envelope.specversion != "1.0"
        or time.tzinfo is None
        # Years strictly inside the window are inside it whatever the offset; the
        # slow path checks the edges exactly (``time_problem``).
        or not _YEAR_MIN < time.year < _YEAR_MAX
        or subject != event_type.subject
    ):
        return _decode_slowly(subject, payload)
    problem = event_type.check(envelope.data)
    if problem is not None:
        return Rejection(problem, envelope.id, event_type.name)
    return envelope  # type: ignore[no-any-return]


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
    problem = time_problem(envelope.time)
    if problem is not None:
        return Rejection(problem, envelope.id, envelope.type)
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
    return _ENVELOPES[envelope.type](
        specversion=envelope.specversion,
        id=envelope.id,
        source=envelope.source,
        time=envelope.time,
        data=data,
        datacontenttype=envelope.datacontenttype,
    )


def _detail(error: BaseException) -> str:
    return clip(_BACKTICK.sub(r"\1", str(error)))


_partial_decoder = msgspec.json.Decoder()


def _envelope_rejection(payload: bytes, error: msgspec.ValidationError) -> Rejection:
    """A rejection for a JSON document that is not a valid envelope.

    The id and type are recovered when present (and within the id limits) so the
    rejection can be traced.
    """
    try:
        document = _partial_decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError, ValueError) as failed:
        # Not even generic JSON (a truncated document, an integer of 4,300 digits…).
        if isinstance(failed, msgspec.DecodeError) and not isinstance(
            failed, msgspec.ValidationError
        ):
            return Rejection(f"invalid JSON: {_detail(failed)}")
        return Rejection(f"not a CloudEvent: {_explain(error, '')}")
    if not isinstance(document, dict):
        return Rejection("not a CloudEvent: expected a JSON object")
    event_id, event_type = known_id(document.get("id")), known_id(document.get("type"))
    reason = _explain(error, "")
    if reason.startswith("time: invalid"):
        return Rejection("time: invalid RFC 3339 date-time", event_id, event_type)
    if reason.startswith("time:"):
        return Rejection(reason, event_id, event_type)
    return Rejection(f"not a CloudEvent: {reason}", event_id, event_type)
