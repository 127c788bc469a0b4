"""Named read queries: dispatch by name, parameter parsing and result conventions.

Each aggregate module declares its queries in ``QUERIES``; this module finds them by
name, checks parameters with ``Params`` (a bad value raises ``BadQuery`` with a clear
message) and shapes results per docs/API.md: money as two-decimal strings, times as
ISO-8601 UTC with offset, dates as ``YYYY-MM-DD``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Context, Decimal
from typing import Any

import duckdb

from pulse_bi.contract import QUERY_NAMES

DEFAULT_PAGE = 1000
MAX_PAGE = 5000
_CENT = Decimal("0.01")
#: Exact arithmetic for every stored sum: DECIMAL(38,2) has 38 digits, more than the
#: default context's 28, which would round (or fail to quantize) the largest sums.
EXACT = Context(prec=80, rounding=ROUND_HALF_UP)


class BadQuery(ValueError):
    """An unknown query name or a bad parameter; the message says which and why."""


@dataclass
class QueryResult:
    """A JSON-able result and, for paged lists, the offset of the next page."""

    data: Any
    next_offset: int | None = None


@dataclass(frozen=True, slots=True)
class QueryContext:
    """Facts a query may need that are not in the database."""

    #: The stream's last sequence; None when not known (a store without a consumer).
    stream_last_sequence: int | None = None
    today: date | None = None
    #: The materializer's health (``ok``, ``degraded``, ``unavailable``) and its reason,
    #: shown by the ``pipeline`` query.
    status: str = "ok"
    reason: str = "ok"
    #: Last backup, archive horizon, file size and free disk (``Lifecycle.stats``),
    #: shown by the ``pipeline`` query; empty for a store without a materializer.
    lifecycle: Mapping[str, Any] = field(default_factory=dict)

    def today_utc(self) -> date:
        """The as-of date default: today in UTC."""
        return self.today or datetime.now(UTC).date()


class Params:
    """Typed access to query parameters; ``done()`` rejects names nobody asked for."""

    def __init__(self, name: str, raw: Mapping[str, Any]) -> None:
        if not isinstance(raw, Mapping):
            raise BadQuery(f"{name}: parameters must be a JSON object")
        self.name = name
        # A null parameter means "not given", as GraphQL optional arguments arrive.
        self._raw = {key: value for key, value in raw.items() if value is not None}
        self._used: set[str] = set()

    def _get(self, key: str) -> Any:
        self._used.add(key)
        return self._raw.get(key)

    def _bad(self, key: str, why: str) -> BadQuery:
        return BadQuery(f"{self.name}: parameter '{key}' {why}")

    def as_time(self, key: str) -> datetime:
        """A required ISO-8601 time with offset (epoch milliseconds also accepted)."""
        value = self._get(key)
        if value is None:
            raise self._bad(key, "is required")
        if isinstance(value, int) and not isinstance(value, bool):
            return datetime.fromtimestamp(value / 1000, UTC)
        if not isinstance(value, str):
            raise self._bad(key, "must be an ISO-8601 time with offset")
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise self._bad(key, f"is not an ISO-8601 time: {value!r}") from None
        if parsed.tzinfo is None:
            raise self._bad(key, f"has no timezone offset: {value!r}")
        return parsed.astimezone(UTC)

    def as_date(self, key: str, default: date) -> date:
        """An optional ``YYYY-MM-DD`` date."""
        value = self._get(key)
        if value is None:
            return default
        if not isinstance(value, str):
            raise self._bad(key, "must be a date YYYY-MM-DD")
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise self._bad(key, f"is not a date YYYY-MM-DD: {value!r}") from None

    def as_int(self, key: str, default: int, *, minimum: int = 0, maximum: int = MAX_PAGE) -> int:
        """An optional integer within bounds."""
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._bad(key, "must be an integer")
        if not minimum <= value <= maximum:
            raise self._bad(key, f"must be between {minimum} and {maximum}")
        return value

    def as_str(self, key: str) -> str | None:
        """An optional string filter."""
        value = self._get(key)
        if value is not None and not isinstance(value, str):
            raise self._bad(key, "must be a string")
        return value

    def page(self, default_limit: int = DEFAULT_PAGE) -> tuple[int, int]:
        """``(offset, limit)`` for a paged list."""
        offset = self.as_int("offset", 0, maximum=2**62)
        limit = self.as_int("limit", default_limit, minimum=1, maximum=MAX_PAGE)
        return offset, limit

    def done(self) -> None:
        """Fail on parameters the query does not know (typos should not be ignored)."""
        unknown = sorted(set(self._raw) - self._used)
        if unknown:
            raise BadQuery(f"{self.name}: unknown parameter(s) {', '.join(unknown)}")


QueryFunction = Callable[[duckdb.DuckDBPyConnection, Params, QueryContext], QueryResult]


def money(value: Decimal | int | None) -> str:
    """A money value as a decimal string with exactly two decimals."""
    if value is None:
        return "0.00"
    return str(Decimal(value).quantize(_CENT, context=EXACT))


def ratio(amount: Decimal | int | None, count: int) -> str:
    """``amount / count`` as money, 0 when ``count`` is 0."""
    if not count or amount is None:
        return "0.00"
    return money(EXACT.divide(Decimal(amount), count))


def iso_time(value: datetime | None) -> str | None:
    """An ISO-8601 UTC time with offset, or None."""
    return None if value is None else value.astimezone(UTC).isoformat()


def paged(
    cur: duckdb.DuckDBPyConnection,
    sql: str,
    args: list[Any],
    offset: int,
    limit: int,
    shape: Callable[[tuple[Any, ...]], dict[str, Any]],
) -> QueryResult:
    """Run ``sql`` (without LIMIT) for one page and say whether more rows follow."""
    rows = cur.execute(f"{sql} LIMIT ? OFFSET ?", [*args, limit + 1, offset]).fetchall()
    more = len(rows) > limit
    return QueryResult([shape(row) for row in rows[:limit]], offset + limit if more else None)


def top(
    cur: duckdb.DuckDBPyConnection,
    sql: str,
    args: list[Any],
    offset: int,
    limit: int,
    shape: Callable[[tuple[Any, ...]], dict[str, Any]],
) -> QueryResult:
    """The first ``limit`` rows of a top-N list (top products, latest movements…).

    Here ``limit`` is the N the caller asked for, not a page size: no ``next_offset``,
    so a client that follows pages still gets N rows.
    """
    rows = cur.execute(f"{sql} LIMIT ? OFFSET ?", [*args, limit, offset]).fetchall()
    return QueryResult([shape(row) for row in rows])


def registry() -> dict[str, QueryFunction]:
    """Every named query by name, from the aggregate modules."""
    from materializer.aggregates import AGGREGATES  # the aggregates import this module

    table: dict[str, QueryFunction] = {}
    for module in AGGREGATES:
        table.update(module.QUERIES)
    return table


_REGISTRY: dict[str, QueryFunction] | None = None


def run(
    cur: duckdb.DuckDBPyConnection,
    name: str,
    params: Mapping[str, Any],
    context: QueryContext,
) -> QueryResult:
    """Answer one named query."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = registry()
    function = _REGISTRY.get(name)
    if function is None:
        raise BadQuery(f"unknown query '{name}'; known: {', '.join(QUERY_NAMES)}")
    return function(cur, Params(name, params), context)
