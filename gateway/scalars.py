"""Custom scalars: DateTime (ISO or epoch ms in), Date, Money (exact JSON number), BigInt."""

from __future__ import annotations

import datetime as dt
import re
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Context, Decimal, InvalidOperation
from typing import Any

import strawberry
from graphql import GraphQLError

from pulse_bi.contract import BigInt, Money

UTC = dt.UTC
_CENT = Decimal("0.01")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_INTEGER = re.compile(r"-?[0-9]+")
#: Longest numeric text read (Python refuses int() of more than 4,300 digits anyway).
_MAX_NUMBER_TEXT = 100
#: Longest DateTime text read (ISO-8601 with nanoseconds and an offset is 35 characters).
_MAX_DATETIME_TEXT = 64
_NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
#: Epoch inputs are milliseconds; below this (1973-01-01T00:00:00Z in ms) a value can only
#: be seconds (1973 in seconds is 94,694,400; in ms it is 11 digits) and is refused.
MIN_EPOCH_MS = 94_694_400_000
#: The last epoch millisecond of year 9999.
_MAX_EPOCH_MS = 253_402_300_799_999
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
#: Room for every stored sum (DECIMAL(38,2)); the default context's 28 digits are not.
_EXACT = Context(prec=80, rounding=ROUND_HALF_UP)

#: Money (an exact Decimal with two places) and BigInt (sequences, counters and sums of
#: quantities that may pass 2^31) are the registry's types; SCALAR_MAP gives their scalars.
__all__ = ["SCALAR_MAP", "UTC", "BigInt", "Money", "to_money"]


def to_money(value: Any) -> Money:
    """A Decimal with two places from a Decimal, int or decimal string."""
    if isinstance(value, bool) or not isinstance(value, Decimal | int | float | str):
        raise GraphQLError(f"Money cannot represent {value!r}")
    if isinstance(value, str) and len(value) > _MAX_NUMBER_TEXT:
        raise GraphQLError(f"Money cannot represent a {len(value)}-character string")
    if isinstance(value, float):
        # Floats never come from the materializer; accept them as input but via repr.
        value = repr(value)
    try:
        amount = Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise GraphQLError(f"Money cannot represent {value!r}") from None
    if not amount.is_finite():
        raise GraphQLError(f"Money cannot represent {value!r}")
    try:
        return Money(amount.quantize(_CENT, context=_EXACT))
    except InvalidOperation:  # more than 78 integer digits: never a stored value
        raise GraphQLError(f"Money cannot represent {value!r}: out of range") from None


def parse_bigint(value: Any) -> int:
    """A signed 64-bit integer from a JSON integer or a string of ASCII digits."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise GraphQLError(f"BigInt cannot represent {value!r}")
    if isinstance(value, str):
        if len(value) > _MAX_NUMBER_TEXT or not _INTEGER.fullmatch(value):
            raise GraphQLError(f"BigInt cannot represent {value[:40]!r}")
        value = int(value)
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise GraphQLError(f"BigInt cannot represent {value}: outside the signed 64-bit range")
    return value


def parse_datetime(value: Any) -> dt.datetime:
    """An aware UTC datetime from ISO-8601 with offset, or epoch milliseconds (number/string)."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise GraphQLError("DateTime needs a timezone offset")
        return _to_utc(value, value)
    if isinstance(value, bool):
        raise GraphQLError(f"DateTime cannot represent {value!r}")
    if isinstance(value, int | float):
        return _from_epoch_ms(value)
    if not isinstance(value, str):
        raise GraphQLError(f"DateTime cannot represent {value!r}")
    text = value.strip()
    if len(text) > _MAX_DATETIME_TEXT:
        raise GraphQLError(f"DateTime cannot represent a {len(value)}-character string")
    if _NUMBER.fullmatch(text):
        # Grafana's ${__from} arrives as a numeric string; a number is epoch milliseconds.
        return _from_epoch_ms(Decimal(text))
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise GraphQLError(
            f"DateTime must be ISO-8601 with an offset or epoch milliseconds, got {value!r}"
        ) from None
    if parsed.tzinfo is None:
        raise GraphQLError(f"DateTime needs a timezone offset (e.g. Z or +00:00): {value!r}")
    return _to_utc(parsed, value)


def _to_utc(parsed: dt.datetime, value: Any) -> dt.datetime:
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00+01:00 is in year 0 in UTC
        raise GraphQLError(f"DateTime is out of range in UTC: {value!r}") from None


def _from_epoch_ms(number: float | Decimal) -> dt.datetime:
    # Exact decimal arithmetic: a float loses microseconds past the year 2255.
    amount = Decimal(repr(number)) if isinstance(number, float) else Decimal(number)
    if not amount.is_finite():
        raise GraphQLError(f"DateTime cannot represent {number!r}")
    if amount < MIN_EPOCH_MS:
        raise GraphQLError(
            f"DateTime epoch values are milliseconds; {amount:.0f} would be before 1973 "
            "(seconds? multiply by 1000, or send ISO-8601)"
        )
    if amount > _MAX_EPOCH_MS:
        raise GraphQLError(f"DateTime epoch milliseconds out of range (after 9999): {number!r}")
    microseconds = int((amount * 1000).to_integral_value(ROUND_HALF_EVEN))
    return _EPOCH + dt.timedelta(microseconds=microseconds)


def serialize_datetime(value: Any) -> str:
    """ISO-8601 in UTC (`2026-11-25T10:00:00+00:00`)."""
    return parse_datetime(value).isoformat()


def parse_date(value: Any) -> dt.date:
    """A date from `YYYY-MM-DD`; a date-time or epoch milliseconds give their UTC date."""
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            pass
    if isinstance(value, str | int | float | dt.datetime) and not isinstance(value, bool):
        try:
            # Dashboards pass their time range as it is: take its UTC date.
            return parse_datetime(value).date()
        except GraphQLError:
            pass
    raise GraphQLError(f"Date must be YYYY-MM-DD (or a date-time), got {value!r}")


def serialize_date(value: Any) -> str:
    """`YYYY-MM-DD`."""
    return parse_date(value).isoformat()


#: Passed to strawberry as `StrawberryConfig(scalar_map=...)`.
SCALAR_MAP: dict[object, Any] = {
    Money: strawberry.scalar(
        name="Money",
        description=(
            "An amount of money, exact to the cent, sent as a JSON number (no binary rounding)."
        ),
        serialize=lambda value: to_money(value),
        parse_value=lambda value: to_money(value),
    ),
    BigInt: strawberry.scalar(
        name="BigInt",
        description=(
            "An integer that may pass 2^31 (sequences, counters, sums of quantities), sent as "
            "a JSON number."
        ),
        serialize=lambda value: int(value),
        parse_value=parse_bigint,
    ),
    dt.datetime: strawberry.scalar(
        name="DateTime",
        description=(
            "A point in time. Output: ISO-8601 in UTC. Input: ISO-8601 with an offset, or "
            "epoch milliseconds (not seconds) as a number or a numeric string; epoch values "
            "before 1973 as milliseconds are refused as probable seconds."
        ),
        serialize=serialize_datetime,
        parse_value=parse_datetime,
    ),
    dt.date: strawberry.scalar(
        name="Date",
        description=(
            "A calendar date, YYYY-MM-DD. Input also accepts an ISO-8601 date-time with an "
            "offset or epoch milliseconds, meaning their UTC date."
        ),
        serialize=serialize_date,
        parse_value=parse_date,
    ),
}
