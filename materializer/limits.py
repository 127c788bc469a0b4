"""The event contract's limits: every value the store keeps, and every sum of them, fits
what DuckDB's columns and every read path can hold (docs/EVENTS.md, "Limits").

Each limit is enforced when a message is decoded (``materializer.events``) and breaking
one is a rejection with a reason that names the field and the limit.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

import msgspec

from pulse_bi.contract.wire import MAX_SITE_LENGTH, SITE_HEADER

#: Largest message payload; the default ``max_payload`` of nats-server.
MAX_PAYLOAD_BYTES = 1024 * 1024
#: Deepest JSON nesting; the contract itself needs 4 (envelope, data, lines, line).
MAX_DEPTH = 64
#: Longest id (event id, source, type, order id, sku, …), in characters.
MAX_ID_LENGTH = 256
#: Longest free text (names, categories, reasons, specversion…), in characters.
MAX_TEXT_LENGTH = 4096
#: Most lines of one order: an order's units (lines x quantity) stay far inside BIGINT.
MAX_LINES = 10_000
#: Largest quantity or quantity delta, either sign.
MAX_QUANTITY = 1_000_000_000
#: Money is below this in absolute value: 16 integer digits and 2 decimals, so one value
#: fits DECIMAL(18,2) and a sum of 10^20 of them fits the sums' DECIMAL(38,2).
MONEY_LIMIT = Decimal("1e16")
#: Event times are within [TIME_MIN, TIME_MAX), dates within [DATE_MIN, DATE_MAX).
TIME_MIN = datetime(1970, 1, 1, tzinfo=UTC)
TIME_MAX = datetime(2200, 1, 1, tzinfo=UTC)
DATE_MIN = TIME_MIN.date()
DATE_MAX = TIME_MAX.date()

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LENGTH)]
Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT_LENGTH)]
Quantity = Annotated[int, msgspec.Meta(ge=-MAX_QUANTITY, le=MAX_QUANTITY)]
PositiveQuantity = Annotated[int, msgspec.Meta(gt=0, le=MAX_QUANTITY)]
NonNegativeQuantity = Annotated[int, msgspec.Meta(ge=0, le=MAX_QUANTITY)]

_CENT = Decimal("0.01")
_MONEY_RANGE = f"{-MONEY_LIMIT + _CENT} .. {MONEY_LIMIT - _CENT}"
_TIME_WINDOW = f"{TIME_MIN.isoformat()} .. {TIME_MAX.isoformat()} (exclusive)"
_DATE_WINDOW = f"{DATE_MIN.isoformat()} .. {DATE_MAX.isoformat()} (exclusive)"


def money_problem(value: Decimal, field: str) -> str | None:
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
        return f"data.{field}: out of range {_MONEY_RANGE}"
    return f"data.{field}: more than 2 decimals"


_SITE = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_SITE_LENGTH}}}")


def site_problem(site: str) -> str | None:
    """Why a ``Pulse-Site`` header value is not a site's name, or None when it is one."""
    if _SITE.fullmatch(site):
        return None
    if not site:
        return f"{SITE_HEADER} header: empty (leave the header out for the central site)"
    if len(site) > MAX_SITE_LENGTH:
        return f"{SITE_HEADER} header: {len(site)} characters, the limit is {MAX_SITE_LENGTH}"
    return (
        f"{SITE_HEADER} header: {clip(repr(site), 80)} is not a site name"
        " (ASCII letters, digits, '-' and '_')"
    )


def date_problem(value: date, field: str) -> str | None:
    """Why a date is unacceptable (outside the window), or None."""
    if DATE_MIN <= value < DATE_MAX:
        return None
    return f"data.{field}: {value.isoformat()} is outside {_DATE_WINDOW}"


def time_problem(value: datetime) -> str | None:
    """Why an aware event time is unacceptable (outside the window), or None."""
    if TIME_MIN <= value < TIME_MAX:
        return None
    return f"time: {value.isoformat()} is outside {_TIME_WINDOW}"


_generic_decoder = msgspec.json.Decoder()


def too_deep(payload: bytes) -> bool:
    """Whether the JSON nests deeper than ``MAX_DEPTH`` (arrays and objects).

    A document with fewer brackets than that cannot (the decoder counts them first).
    Others are decoded as plain JSON (whose decoder stops at ~1,000 levels on its own)
    and walked.
    """
    if payload.count(b"{") + payload.count(b"[") <= MAX_DEPTH:
        return False
    try:
        document = _generic_decoder.decode(payload)
    except RecursionError:
        return True
    except (msgspec.DecodeError, ValueError):
        return False  # not JSON at all: the event decoders say why
    deepest = 0
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        value, level = stack.pop()
        children = value.values() if isinstance(value, dict) else value
        if level > deepest:
            deepest = level
            if deepest > MAX_DEPTH:
                return True
        stack.extend((child, level + 1) for child in children if isinstance(child, dict | list))
    return False


def known_id(value: Any) -> str | None:
    """An id or type to keep with a rejection: a string no longer than the id limit."""
    if isinstance(value, str) and len(value) <= MAX_ID_LENGTH:
        return value
    return None


def clip(reason: str, limit: int = 500) -> str:
    """A reason short enough to list; the raw bytes are kept with it anyway."""
    return reason if len(reason) <= limit else reason[: limit - 1] + "…"
