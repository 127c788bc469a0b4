"""Event decoding and validation: what is accepted, and the reason for what is not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from materializer import events
from materializer.events import (
    EVENT_TYPES,
    Event,
    InvoiceIssued,
    OrderCreated,
    Rejection,
    decode,
)
from tests.conftest import SUBJECTS

ORDER_SUBJECT = "pulse.events.orders.created"


def envelope(data: Any = None, **fields: Any) -> bytes:
    document: dict[str, Any] = {
        "specversion": "1.0",
        "id": "e1",
        "source": "/orders",
        "type": "order.created",
        "time": "2026-11-25T10:04:05Z",
        "data": data if data is not None else order(),
    }
    document.update(fields)
    return msgspec.json.encode({k: v for k, v in document.items() if v is not ...})


def order(**fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "order_id": "O-1",
        "customer_id": "C-1",
        "channel": "web",
        "total_amount": "12.30",
        "lines": [{"sku": "SKU-1", "quantity": 3, "unit_price": 4.1}],
    }
    data.update(fields)
    return {k: v for k, v in data.items() if v is not ...}


def reason(payload: bytes, subject: str = ORDER_SUBJECT) -> str:
    result = decode(subject, payload)
    assert isinstance(result, Rejection), result
    return result.reason


def test_valid_order_decodes_to_typed_data_with_exact_money() -> None:
    result = decode(ORDER_SUBJECT, envelope())
    assert isinstance(result, Event)
    assert (result.id, result.type) == ("e1", "order.created")
    assert result.time == datetime(2026, 11, 25, 10, 4, 5, tzinfo=UTC)
    assert isinstance(result.data, OrderCreated)
    assert result.data.total_amount == Decimal("12.30")
    assert result.data.lines[0].unit_price == Decimal("4.1")
    assert result.data.lines[0].quantity == 3


def test_time_keeps_its_offset_as_an_aware_datetime() -> None:
    result = decode(ORDER_SUBJECT, envelope(time="2026-11-25T12:04:05+02:00"))
    assert isinstance(result, Event)
    assert result.time.utcoffset() == timedelta(hours=2)
    assert result.time == datetime(2026, 11, 25, 10, 4, 5, tzinfo=timezone.utc)  # noqa: UP017


@pytest.mark.parametrize("amount", ["10", "10.5", "10.50", 10, 10.5, "1.100", "-3.20", "0"])
def test_money_accepts_numbers_and_strings_with_at_most_two_decimals(amount: Any) -> None:
    assert isinstance(decode(ORDER_SUBJECT, envelope(order(total_amount=amount))), Event)


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        ("10.005", "data.total_amount: more than 2 decimals"),
        (0.001, "data.total_amount: more than 2 decimals"),
        ("NaN", "data.total_amount: not a finite number"),
        ("Infinity", "data.total_amount: not a finite number"),
        ("1e20", "data.total_amount: out of range -9999999999999999.99 .. 9999999999999999.99"),
        ("ten", "data.total_amount: invalid decimal string"),
        (True, "data.total_amount: expected decimal, got bool"),
        (None, "data.total_amount: expected decimal, got null"),
    ],
)
def test_bad_money_is_rejected_with_the_field_named(amount: Any, expected: str) -> None:
    assert reason(envelope(order(total_amount=amount))) == expected


def test_bad_money_in_a_line_names_the_line() -> None:
    lines = [{"sku": "A", "quantity": 1, "unit_price": "1.00"}]
    lines.append({"sku": "B", "quantity": 1, "unit_price": "0.999"})
    assert reason(envelope(order(lines=lines))) == "data.lines[1].unit_price: more than 2 decimals"


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [
        (1.5, "data.lines[0].quantity: expected int, got float"),
        ("2", "data.lines[0].quantity: expected int, got str"),
        (0, "data.lines[0].quantity: expected int >= 1"),
    ],
)
def test_quantities_must_be_positive_integers(quantity: Any, expected: str) -> None:
    lines = [{"sku": "A", "quantity": quantity, "unit_price": "1.00"}]
    assert reason(envelope(order(lines=lines))) == expected


def test_missing_and_mistyped_data_fields_are_named() -> None:
    assert reason(envelope(order(customer_id=...))) == "data: missing 'customer_id'"
    assert reason(envelope(order(channel=7))) == "data.channel: expected str, got int"
    assert reason(envelope(order(order_id=""))) == "data.order_id: expected str of length >= 1"
    assert reason(envelope(order(lines="x"))) == "data.lines: expected array, got str"
    assert reason(envelope(data=[1])) == "data: expected object, got array"
    lines = [{"sku": "A", "unit_price": "1.00"}]
    assert reason(envelope(order(lines=lines))) == "data.lines[0]: missing 'quantity'"


def test_time_must_carry_a_timezone() -> None:
    assert reason(envelope(time="2026-11-25T10:04:05")) == "time has no timezone"
    assert reason(envelope(time="yesterday")) == "time: invalid RFC 3339 date-time"


def test_envelope_must_be_a_cloudevent() -> None:
    assert reason(envelope(id=...)) == "not a CloudEvent: missing 'id'"
    assert reason(envelope(source=...)) == "not a CloudEvent: missing 'source'"
    assert reason(envelope(time=...)) == "not a CloudEvent: missing 'time'"
    assert reason(envelope(data=...)) == "not a CloudEvent: missing 'data'"
    assert reason(envelope(id=5)) == "not a CloudEvent: id: expected str, got int"
    assert reason(envelope(id="")) == "not a CloudEvent: id: expected str of length >= 1"
    assert reason(envelope(specversion="0.3")) == (
        "not a CloudEvent: specversion '0.3' is not '1.0'"
    )
    assert reason(b"[1, 2]") == "not a CloudEvent: expected a JSON object"


def test_rejection_keeps_id_and_type_when_they_are_known() -> None:
    result = decode(ORDER_SUBJECT, envelope(time="2026-11-25T10:04:05"))
    assert isinstance(result, Rejection)
    assert (result.id, result.type) == ("e1", "order.created")
    missing_source = decode(ORDER_SUBJECT, envelope(source=...))
    assert isinstance(missing_source, Rejection)
    assert (missing_source.id, missing_source.type) == ("e1", "order.created")


def test_invalid_json_is_rejected() -> None:
    assert reason(b'{"specversion": "1.0",').startswith("invalid JSON: ")
    assert reason(b"\xff\xfe").startswith("invalid JSON: ")


def test_unknown_type_is_rejected() -> None:
    assert reason(envelope(type="foo.bar")) == "unknown event type 'foo.bar'"


def test_type_must_match_the_subject() -> None:
    assert reason(envelope(), "pulse.events.orders.cancelled") == (
        "type 'order.created' does not match subject 'pulse.events.orders.cancelled'"
    )


def test_every_contract_type_has_its_subject() -> None:
    assert {name: t.subject for name, t in EVENT_TYPES.items()} == {
        name: f"pulse.events.{suffix}" for name, suffix in SUBJECTS.items()
    }


def test_invoice_dates_and_optional_order_id() -> None:
    data = {
        "invoice_id": "I-1",
        "customer_id": "C-1",
        "amount": "99.99",
        "issued_on": "2026-11-01",
        "due_date": "2026-12-01",
    }
    payload = envelope(data, type="invoice.issued")
    result = decode("pulse.events.invoices.issued", payload)
    assert isinstance(result, Event)
    assert isinstance(result.data, InvoiceIssued)
    assert result.data.order_id is None
    assert str(result.data.due_date) == "2026-12-01"
    bad = envelope({**data, "due_date": "December"}, type="invoice.issued")
    assert (
        reason(bad, "pulse.events.invoices.issued") == "data.due_date: invalid RFC3339 encoded date"
    )


def _answer(result: Event | Rejection) -> tuple[Any, ...]:
    """What a decode answers, whichever path built it (their Struct classes differ)."""
    if isinstance(result, Rejection):
        return ("rejected", result.reason, result.id, result.type)
    return ("event", result.type, result.id, result.time, msgspec.json.encode(result.data))


#: Valid data of each type: an envelope of a type with its data passes or fails on the
#: envelope alone.
_DATA: dict[Any, Any] = {
    "order.created": order(),
    "order.cancelled": {"order_id": "O-1", "reason": "late"},
    "invoice.issued": {
        "invoice_id": "I-1",
        "customer_id": "C-1",
        "amount": "5.00",
        "issued_on": "2026-11-25",
        "due_date": "2026-12-25",
    },
    "payment.received": {"payment_id": "P-1", "invoice_id": "I-1", "amount": "5.00"},
    "stock.moved": {"sku": "A", "warehouse": "W", "quantity_delta": -2, "reason": "shipment"},
    "product.updated": {
        "sku": "A",
        "name": "a",
        "category": "c",
        "reorder_point": 1,
        "unit_cost": "1.00",
    },
    "customer.updated": {"customer_id": "C-1", "name": "n"},
}
_VALID = "1.0"
_YEARS = st.datetimes(min_value=datetime(1960, 1, 2), max_value=datetime(2210, 12, 30))


@settings(max_examples=400, deadline=None)
@given(
    specversion=st.sampled_from([_VALID, _VALID, _VALID, "1.0 ", "0.3", "", 1.0, None, ...]),
    time=st.one_of(
        _YEARS.map(lambda t: t.isoformat() + "Z"),
        _YEARS.map(lambda t: t.isoformat() + "-09:30"),
        st.sampled_from(
            [
                "2026-11-25T10:04:05",
                "1970-01-01T00:30:00+01:00",
                "2199-12-31T23:59:59-01:00",
                "0001-01-01T00:00:00Z",
                "9999-12-31T23:59:59-02:00",
                "yesterday",
                ...,
            ]
        ),
    ),
    event_type=st.sampled_from([*SUBJECTS, "foo.bar", ...]),
    subject=st.sampled_from([*(f"pulse.events.{s}" for s in SUBJECTS.values()), "x.y", ""]),
    matching=st.booleans(),
    extra=st.sampled_from([{}, {}, {"extension": "x"}, {"datacontenttype": 5}]),
)
def test_the_fast_path_answers_as_every_check_in_order_does(
    specversion: Any,
    time: Any,
    event_type: Any,
    subject: str,
    matching: bool,
    extra: dict[str, Any],
) -> None:
    # The fast path checks part of the envelope in msgspec and the rest inline; the
    # checked path runs every check in its order: the same answer for any envelope.
    if matching and event_type in SUBJECTS:
        subject = f"pulse.events.{SUBJECTS[event_type]}"
    data = _DATA.get(event_type, order())
    payload = envelope(data, specversion=specversion, time=time, type=event_type, **extra)
    assert _answer(decode(subject, payload)) == _answer(events._decode_checked(subject, payload))
