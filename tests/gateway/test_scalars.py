"""Property tests of the scalar parsers: a value or a GraphQLError, never anything else."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from graphql import GraphQLError
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.scalars import (
    MIN_EPOCH_MS,
    UTC,
    parse_bigint,
    parse_date,
    parse_datetime,
    serialize_datetime,
    to_money,
)

BOUNDED = settings(max_examples=100, deadline=None)

#: Anything a JSON variable (or a Python caller) could hand a parser.
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text()
    | st.decimals(allow_nan=True, allow_infinity=True),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=5,
)
numeric_text = st.from_regex(
    r"[+-]?[0-9]{0,25}(\.[0-9]{0,10})?([eE][+-]?[0-9]{1,6})?", fullmatch=True
)
aware = st.datetimes(
    min_value=dt.datetime(1973, 1, 2), max_value=dt.datetime(9999, 12, 30), timezones=st.just(UTC)
).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))
offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda m: dt.timezone(dt.timedelta(minutes=m))
)


def refused_or(parse: Any, value: Any) -> Any:
    try:
        return parse(value)
    except GraphQLError as exc:
        assert exc.message
        return None


def _utc(parsed: Any, value: Any) -> None:
    assert parsed.tzinfo is not None and parsed.utcoffset() == dt.timedelta(0)
    assert parsed.year >= 1973 or not isinstance(value, int | float)


def _date(parsed: Any, value: Any) -> None:
    assert isinstance(parsed, dt.date) and not isinstance(parsed, dt.datetime)


def _cents(parsed: Any, value: Any) -> None:
    assert isinstance(parsed, Decimal) and parsed.is_finite()
    assert parsed.as_tuple().exponent == -2


def _int64(parsed: Any, value: Any) -> None:
    assert type(parsed) is int and -(2**63) <= parsed < 2**63


@pytest.mark.parametrize(
    ("parse", "values", "check"),
    [
        (parse_datetime, json_values | numeric_text, _utc),
        (parse_date, json_values | st.dates().map(str) | st.dates(), _date),
        (to_money, json_values | numeric_text, _cents),
        (parse_bigint, json_values | numeric_text, _int64),
    ],
    ids=["datetime: UTC", "date: a date", "money: cents", "bigint: an int64"],
)
@BOUNDED
@given(data=st.data())
def test_each_parser_returns_its_value_or_a_graphql_error(
    parse: Any, values: Any, check: Any, data: st.DataObject
) -> None:
    value = data.draw(values)
    parsed = refused_or(parse, value)
    if parsed is not None:
        check(parsed, value)


@BOUNDED
@given(aware, offsets)
def test_iso_and_epoch_milliseconds_round_trip(moment: dt.datetime, offset: dt.tzinfo) -> None:
    assert parse_datetime(moment.astimezone(offset).isoformat()) == moment
    ms = (moment - dt.datetime(1970, 1, 1, tzinfo=UTC)) // dt.timedelta(milliseconds=1)
    assert parse_datetime(ms) == moment
    assert parse_datetime(str(ms)) == moment
    assert parse_datetime(float(ms)) == moment  # exact: every such ms is a float exactly
    assert parse_datetime(serialize_datetime(moment)) == moment


@BOUNDED
@given(st.integers(min_value=-(2**63), max_value=MIN_EPOCH_MS - 1))
def test_epoch_values_before_1973_as_milliseconds_are_refused(value: int) -> None:
    with pytest.raises(GraphQLError, match=r"milliseconds|out of range"):
        parse_datetime(value)


@BOUNDED
@given(st.integers(min_value=10**9, max_value=10**10 - 1))
def test_every_ten_digit_epoch_seconds_value_is_refused(seconds: int) -> None:
    for value in (seconds, str(seconds)):
        with pytest.raises(GraphQLError, match="epoch values are milliseconds"):
            parse_datetime(value)


@BOUNDED
@given(st.dates())
def test_every_date_from_year_1_to_9999_round_trips(day: dt.date) -> None:
    assert parse_date(day.isoformat()) == day


@BOUNDED
@given(st.decimals(min_value=-(10**20), max_value=10**20, places=2))
def test_money_is_exact_to_the_cent_as_a_json_number(amount: Decimal) -> None:
    money = to_money(str(amount))
    assert money == amount
    encoded = msgspec.json.Encoder(decimal_format="number").encode(money)
    assert Decimal(encoded.decode()) == amount


@BOUNDED
@given(st.integers())
def test_bigint_takes_exactly_the_signed_64_bit_range(value: int) -> None:
    inside = -(2**63) <= value < 2**63
    for given_value in (value, str(value)):
        if inside:
            assert parse_bigint(given_value) == value
        else:
            with pytest.raises(GraphQLError, match="BigInt cannot represent"):
                parse_bigint(given_value)


@pytest.mark.parametrize("value", [" 12", "1_000", "١٢", "+5", "0x10", "", "1e3", True, 1.0])
def test_bigint_refuses_what_int_would_quietly_accept(value: Any) -> None:
    with pytest.raises(GraphQLError):
        parse_bigint(value)
