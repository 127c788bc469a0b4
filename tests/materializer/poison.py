"""Poison messages: payloads that once crashed the decoder, with the reason each gets."""

from __future__ import annotations

import msgspec

ORDER_SUBJECT = "pulse.events.orders.created"

_DIGITS = b"1" * 4300


def _order(**fields: object) -> bytes:
    document: dict[str, object] = {
        "specversion": "1.0",
        "id": "poison",
        "source": "/tests",
        "type": "order.created",
        "time": "2026-11-25T10:04:05Z",
        "data": {
            "order_id": "O-P",
            "customer_id": "C-1",
            "channel": "web",
            "total_amount": "1.00",
            "lines": [{"sku": "SKU-1", "quantity": 1, "unit_price": "1.00"}],
        },
    }
    document.update(fields)
    return msgspec.json.encode(document)


#: (name, payload, the start of its rejection reason). Every one fits NATS's default
#: max_payload, so the live tests can publish them all.
POISON: list[tuple[str, bytes, str]] = [
    ("open bracket", b"[", "invalid JSON: Input data was truncated"),
    ("hex literal", b"0x", "invalid JSON: JSON is malformed: trailing characters"),
    ("two values", b"1 2", "invalid JSON: JSON is malformed: trailing characters"),
    ("unfinished array", b"[1,", "invalid JSON: Input data was truncated"),
    ("empty", b"", "invalid JSON: Input data was truncated"),
    ("1,000 nested arrays", b"[" * 1000 + b"]" * 1000, "invalid JSON: nested deeper than 64"),
    ("100,000 open arrays", b"[" * 100_000, "invalid JSON: nested deeper than 64"),
    ("5,000 nested objects", b'{"a":' * 5000 + b"1" + b"}" * 5000, "invalid JSON: nested deeper"),
    (
        "missing id and a 4,300-digit integer",
        b'{"specversion":"1.0","type":"order.created","x":' + _DIGITS + b"}",
        "not a CloudEvent: missing 'id'",
    ),
    (
        "a 4,300-digit quantity",
        _order().replace(b'"quantity":1', b'"quantity":' + _DIGITS),
        "data.lines[0].quantity: expected int <= 1000000000",
    ),
    (
        "a 4,300-digit amount",
        _order().replace(b'"total_amount":"1.00"', b'"total_amount":' + _DIGITS),
        "data.total_amount: out of range",
    ),
    (
        "an amount of 1e999999",
        _order().replace(b'"total_amount":"1.00"', b'"total_amount":1e999999'),
        "data.total_amount: out of range",
    ),
    ("invalid UTF-8", b"\xff\xfe\xfd", "invalid JSON: invalid UTF-8 at byte 0"),
    (
        "invalid UTF-8 in a string",
        _order(id="x").replace(b'"x"', b'"\xc3\x28"'),
        "invalid JSON: invalid UTF-8 at byte 27",
    ),
    (
        "invalid UTF-8 in a string of data",
        _order().replace(b'"O-P"', b'"\xc3\x28"'),
        "invalid JSON: invalid UTF-8 at byte ",
    ),
    (
        "invalid UTF-8 in the key of an unknown field",
        _order().replace(b'"source"', b'"source":"/x","\xff"'),
        "invalid JSON: invalid UTF-8 at byte ",
    ),
    (
        "a lone surrogate",
        _order(id="x").replace(b'"x"', b'"\\ud800"'),
        "invalid JSON: JSON is malformed: unexpected end of escaped utf-16 surrogate pair",
    ),
    ("a NUL byte", b"\x00", "invalid JSON: JSON is malformed: invalid character"),
    ("a NaN literal", b'{"id": NaN}', "invalid JSON: JSON is malformed: invalid character"),
    ("a JSON string", b'"order"', "not a CloudEvent: expected a JSON object"),
    ("null", b"null", "not a CloudEvent: expected a JSON object"),
    (
        "year 9999 with a negative offset",
        _order(time="9999-12-31T23:00:00-05:00"),
        "time: 9999-12-31T23:00:00-05:00 is outside 1970-01-01T00:00:00+00:00 .. ",
    ),
    (
        "year 1",
        _order(time="0001-01-01T00:00:00+05:00"),
        "time: 0001-01-01T00:00:00+05:00 is outside 1970-01-01T00:00:00+00:00 .. ",
    ),
    ("an empty id", _order(id=""), "not a CloudEvent: id: expected str of length >= 1"),
    ("a 257-character id", _order(id="x" * 257), "not a CloudEvent: id: expected str of length"),
]
