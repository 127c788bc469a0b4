"""Custom scalars: DateTime (ISO or epoch ms in), Date, Money (exact JSON number), BigInt."""

from __future__ import annotations

import datetime as dt
import math
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation
from typing import Any, NewType

import strawberry
from graphql import GraphQLError

UTC = dt.UTC
_CENT = Decimal("0.01")
#: Room for every stored sum (DECIMAL(38,2)); the default context's 28 digits are not.
_EXACT = Context(prec=80, rounding=ROUND_HALF_UP)

#: Money in Python: an exact Decimal with two places.
Money = NewType("Money", Decimal)
#: Sequences, counters and sums of quantities that may pass 2^31.
BigInt = NewType("BigInt", int)


def to_money(value: Any) -> Money:
    """A Decimal with two places from a Decimal, int or decimal string."""
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
        raise GraphQLError(f"Money cannot represent {value!r}") from None


def _parse_bigint(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise GraphQLError(f"BigInt cannot represent {value!r}")
    try:
        return int(value)
    except ValueError:
        raise GraphQLError(f"BigInt cannot represent {value!r}") from None


def parse_datetime(value: Any) -> dt.datetime:
    """An aware UTC datetime from ISO-8601 with offset, or epoch milliseconds (number/string)."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise GraphQLError("DateTime needs a timezone offset")
        return value.astimezone(UTC)
    if isinstance(value, bool):
        raise GraphQLError(f"DateTime cannot represent {value!r}")
    if isinstance(value, int | float):
        return _from_epoch_ms(value)
    if not isinstance(value, str):
        raise GraphQLError(f"DateTime cannot represent {value!r}")
    text = value.strip()
    try:
        # Grafana's ${__from} arrives as a numeric string; a number is epoch milliseconds.
        return _from_epoch_ms(float(text))
    except ValueError:
        pass
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise GraphQLError(
            f"DateTime must be ISO-8601 with an offset or epoch milliseconds, got {value!r}"
        ) from None
    if parsed.tzinfo is None:
        raise GraphQLError(f"DateTime needs a timezone offset (e.g. Z or +00:00): {value!r}")
    return parsed.astimezone(UTC)


def _from_epoch_ms(ms: float) -> dt.datetime:
    if not math.isfinite(ms):
        raise GraphQLError(f"DateTime cannot represent {ms!r}")
    try:
        return dt.datetime.fromtimestamp(ms / 1000.0, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise GraphQLError(f"DateTime epoch milliseconds out of range: {ms!r}") from None


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
        parse_value=lambda value: _parse_bigint(value),
    ),
    dt.datetime: strawberry.scalar(
        name="DateTime",
        description=(
            "A point in time. Output: ISO-8601 in UTC. Input: ISO-8601 with an offset, or "
            "epoch milliseconds as a number or a numeric string."
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
