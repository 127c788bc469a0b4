"""The event contract's validation rules, written out plainly for the expected aggregates.

Deliberately independent of the materializer's validation: the two are compared.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from pulse_bi.contract import EVENT_SUBJECT_PREFIX
from pulse_bi.simulator.events import EVENT_TYPES

_DECIMAL_TEXT = re.compile(r"-?\d+(\.\d+)?")
_DATE_TEXT = re.compile(r"\d{4}-\d{2}-\d{2}")


class ContractError(ValueError):
    """The message breaks the event contract; the text says how."""


@dataclass(frozen=True, slots=True)
class Event:
    """A valid event: envelope fields and its data with money as Decimal, dates as date."""

    id: str
    type: str
    time: datetime
    data: dict[str, Any]


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise ContractError(f"{name}: expected a string")
    return value


def _integer(value: Any, name: str) -> int:
    # bool is an int in Python but not an integer in JSON.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ContractError(f"{name}: expected an integer")
    return value


def _money(value: Any, name: str) -> Decimal:
    if isinstance(value, bool):
        raise ContractError(f"{name}: expected a decimal")
    if isinstance(value, str):
        if not _DECIMAL_TEXT.fullmatch(value):
            raise ContractError(f"{name}: expected a decimal")
        value = Decimal(value)
    elif isinstance(value, int):
        value = Decimal(value)
    if not isinstance(value, Decimal) or not value.is_finite():
        raise ContractError(f"{name}: expected a decimal")
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -2:
        raise ContractError(f"{name}: more than 2 decimals")
    return value


def _date(value: Any, name: str) -> date:
    if not isinstance(value, str) or not _DATE_TEXT.fullmatch(value):
        raise ContractError(f"{name}: expected a date YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError as error:
        raise ContractError(f"{name}: expected a date YYYY-MM-DD") from error


def _lines(value: Any, name: str) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise ContractError(f"{name}: expected a list")
    lines = []
    for index, line in enumerate(value):
        where = f"{name}[{index}]"
        if not isinstance(line, dict):
            raise ContractError(f"{where}: expected an object")
        lines.append(_fields(line, _LINE, where))
    return lines


_Check = Callable[[Any, str], Any]
_LINE: dict[str, _Check] = {"sku": _text, "quantity": _integer, "unit_price": _money}
#: event type → field → its check. Every field is required but those in OPTIONAL.
SCHEMAS: dict[str, dict[str, _Check]] = {
    "order.created": {
        "order_id": _text,
        "customer_id": _text,
        "channel": _text,
        "total_amount": _money,
        "lines": _lines,
    },
    "order.cancelled": {"order_id": _text, "reason": _text},
    "invoice.issued": {
        "invoice_id": _text,
        "customer_id": _text,
        "order_id": _text,
        "amount": _money,
        "issued_on": _date,
        "due_date": _date,
    },
    "payment.received": {"payment_id": _text, "invoice_id": _text, "amount": _money},
    "stock.moved": {"sku": _text, "warehouse": _text, "quantity_delta": _integer, "reason": _text},
    "product.updated": {
        "sku": _text,
        "name": _text,
        "category": _text,
        "reorder_point": _integer,
        "unit_cost": _money,
    },
    "customer.updated": {"customer_id": _text, "name": _text},
}


#: event type → its data fields that may be null or left out.
OPTIONAL: dict[str, frozenset[str]] = {"invoice.issued": frozenset({"order_id"})}


def _fields(
    document: dict[str, Any],
    schema: dict[str, _Check],
    where: str,
    optional: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, check in schema.items():
        value = document.get(name)
        if value is None:
            if name not in optional:
                raise ContractError(f"{where}.{name}: missing")
            result[name] = None
            continue
        result[name] = check(value, f"{where}.{name}")
    return result


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def validate(subject: str, raw: bytes) -> Event:
    """The event a message carries, or ContractError saying why it must be rejected."""
    try:
        document = json.loads(
            raw.decode("utf-8"), parse_float=Decimal, parse_constant=_no_constants
        )
    except (UnicodeDecodeError, ValueError) as error:
        raise ContractError(f"invalid JSON: {error}") from error
    if not isinstance(document, dict):
        raise ContractError("not a CloudEvent: not a JSON object")
    if document.get("specversion") != "1.0":
        raise ContractError("not a CloudEvent: specversion is not '1.0'")
    for attribute in ("id", "source", "type"):
        value = document.get(attribute)
        if not isinstance(value, str) or not value:
            raise ContractError(f"not a CloudEvent: missing {attribute!r}")
    event_type = document["type"]
    if event_type not in EVENT_TYPES:
        raise ContractError(f"unknown event type {event_type!r}")
    if subject != EVENT_SUBJECT_PREFIX + EVENT_TYPES[event_type][0]:
        raise ContractError(f"type {event_type!r} does not belong on subject {subject!r}")
    stamp = document.get("time")
    if not isinstance(stamp, str):
        raise ContractError("time: missing")
    try:
        time = datetime.fromisoformat(stamp)
    except ValueError as error:
        raise ContractError("time: not ISO-8601") from error
    if time.tzinfo is None:
        raise ContractError("time has no timezone")
    data = document.get("data")
    if not isinstance(data, dict):
        raise ContractError("data: expected an object")
    return Event(
        document["id"],
        event_type,
        time,
        _fields(data, SCHEMAS[event_type], "data", OPTIONAL.get(event_type, frozenset())),
    )


__all__ = ["SCHEMAS", "ContractError", "Event", "validate"]
