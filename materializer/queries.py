"""Named read queries: one SQL function per ``QuerySpec``, parameters and rows typed.

Each aggregate module implements its queries with ``@implements(SPEC)``; the spec
(``pulse_bi.contract.registry``) says the parameters and the rows. This module checks
parameters against the spec's struct (a bad value raises ``BadQuery`` with a clear
message), turns SQL result rows into the spec's row structs by column name, and shapes
values per docs/API.md, "Conventions": money as exact two-decimal Decimals (decimal
strings on the wire), times as UTC with offset, dates as ``YYYY-MM-DD``.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Context, Decimal
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import duckdb
import msgspec

from pulse_bi.contract import BY_NAME, QUERY_NAMES, BigInt, Money, QuerySpec, UtcTime, to_wire
from pulse_bi.contract.spec import MAX_PAGE, Row, describe_type, unwrap

if TYPE_CHECKING:
    from materializer.aggregates.pipeline import State as PipelineState

__all__ = ["MAX_PAGE", "BadQuery", "QueryContext", "QueryResult", "implements", "run"]

_CENT = Decimal("0.01")
#: Exact arithmetic for every stored sum: DECIMAL(38,2) has 38 digits, more than the
#: default context's 28, which would round (or fail to quantize) the largest sums.
EXACT = Context(prec=80, rounding=ROUND_HALF_UP)

D = TypeVar("D")
P = TypeVar("P", bound=msgspec.Struct)
R = TypeVar("R", bound=Row)


class BadQuery(ValueError):
    """An unknown query name or a bad parameter; the message says which and why."""


@dataclass
class QueryResult(Generic[D]):
    """A typed result and, for paged lists, the offset of the next page."""

    data: D
    next_offset: int | None = None

    @property
    def wire(self) -> Any:
        """The data as the JSON-shaped objects the reply carries (docs/API.md)."""
        return to_wire(self.data)


@dataclass(frozen=True, slots=True)
class QueryContext:
    """Facts a query may need that are not in the database."""

    #: The stream's last sequence; None when not known (a store without a consumer).
    stream_last_sequence: int | None = None
    today: date | None = None
    #: The materializer's health (``ok``, ``degraded``, ``unavailable``) and its reason,
    #: shown by the ``pipeline`` query. Asked only by a query that shows it: it looks at
    #: the disk, which the other queries, a hundred a second with live subscribers,
    #: have no use for.
    health: Callable[[], tuple[str, str]] = lambda: ("ok", "ok")
    #: Last backup, archive horizon, file size and free disk (``Lifecycle.stats``),
    #: shown by the ``pipeline`` query; empty for a store without a materializer.
    #: Asked only by a query that shows them, as ``health``.
    lifecycle: Callable[[], Mapping[str, Any]] = dict
    #: The pipeline state as last committed (``Store.pipeline_state``), which the
    #: ``pipeline`` query shows; None: read it from the file.
    pipeline: PipelineState | None = None

    def today_utc(self) -> date:
        """The as-of date default: today in UTC."""
        return self.today or datetime.now(UTC).date()


Cursor = duckdb.DuckDBPyConnection


@dataclass(frozen=True, slots=True)
class Select:
    """What a list query answers with: its SQL (without LIMIT) and arguments.

    ``run`` pages it as the spec's ``shape`` says (``page``: ``next_offset`` while more
    rows follow; ``top``: the first N) and builds the spec's row structs from the column
    names, or calls ``shape`` on each row tuple for rows with computed fields.
    """

    sql: str
    args: Sequence[Any] = ()
    shape: Callable[[tuple[Any, ...]], Any] | None = None


QueryFunction = Callable[[Cursor, Any, QueryContext], "QueryResult[Any] | Select"]
_IMPLEMENTATIONS: dict[str, QueryFunction] = {}


def implements(
    spec: QuerySpec[P, D],
) -> Callable[
    [Callable[[Cursor, P, QueryContext], QueryResult[D] | Select]],
    Callable[[Cursor, P, QueryContext], QueryResult[D] | Select],
]:
    """Register the SQL function that answers ``spec``: it returns a ``Select`` (list
    queries) or a whole ``QueryResult``."""

    def register(
        function: Callable[[Cursor, P, QueryContext], QueryResult[D] | Select],
    ) -> Callable[[Cursor, P, QueryContext], QueryResult[D] | Select]:
        if spec.name in _IMPLEMENTATIONS:
            raise TypeError(f"{spec.name} is implemented twice")
        _IMPLEMENTATIONS[spec.name] = function
        return function

    return register


def implementations() -> dict[str, QueryFunction]:
    """Every registered query function by name (the aggregate modules register them)."""
    import materializer.aggregates  # noqa: F401 - the modules register on import

    return dict(_IMPLEMENTATIONS)


def check_registry(
    declared: Sequence[str] = QUERY_NAMES, found: Mapping[str, QueryFunction] | None = None
) -> list[str]:
    """What is declared but not implemented, or implemented but not declared."""
    found = implementations() if found is None else found
    problems = [f"query {name} has no SQL function" for name in declared if name not in found]
    problems += [f"query {name} is not declared" for name in found if name not in declared]
    return problems


def run(
    cur: duckdb.DuckDBPyConnection,
    name: str,
    params: Mapping[str, Any],
    context: QueryContext,
) -> QueryResult[Any]:
    """Answer one named query."""
    spec = BY_NAME.get(name)
    function = implementations().get(name)
    if spec is None or function is None:
        raise BadQuery(f"unknown query '{name}'; known: {', '.join(QUERY_NAMES)}")
    parsed = parse(spec, params)
    answer = function(cur, parsed, context)
    if not isinstance(answer, Select):
        return answer
    pages = paged if spec.shape == "page" else top
    return pages(cur, answer.shape or spec.row, answer.sql, answer.args, parsed)


# Parameters ---------------------------------------------------------------------------

#: A struct's fields, once per struct type: ``msgspec.structs.fields`` evaluates the
#: annotations each call, ~36 us that every named query paid (docs/BENCHMARKS.md,
#: "Live queries refreshed at once, and cheaper named queries").
_fields = functools.cache(msgspec.structs.fields)


def parse(spec: QuerySpec[P, Any], raw: Mapping[str, Any]) -> P:
    """The spec's parameter struct from a request's JSON object, or ``BadQuery``."""
    if not isinstance(raw, Mapping):
        raise BadQuery(f"{spec.name}: parameters must be a JSON object")
    # A null parameter means "not given", as GraphQL optional arguments arrive.
    given = {key: value for key, value in raw.items() if value is not None}
    values: dict[str, Any] = {}
    for info in _fields(spec.params):
        key = info.encode_name
        value = given.pop(key, None)
        if value is None:
            if info.required:
                raise BadQuery(f"{spec.name}: parameter '{key}' is required")
            continue
        values[info.name] = _value(spec.name, key, info.type, value)
    if given:
        raise BadQuery(f"{spec.name}: unknown parameter(s) {', '.join(sorted(given))}")
    return spec.params(**values)


def _value(query: str, key: str, annotation: Any, value: Any) -> Any:
    base, _, meta = unwrap(annotation)

    def bad(why: str) -> BadQuery:
        return BadQuery(f"{query}: parameter '{key}' {why}")

    if base is dt.datetime:
        return _time(value, bad)
    if base is dt.date:
        if not isinstance(value, str):
            raise bad("must be a date YYYY-MM-DD")
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise bad(f"is not a date YYYY-MM-DD: {value!r}") from None
    if base is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("must be an integer")
        low = getattr(meta, "ge", None)
        high = getattr(meta, "le", None)
        if (low is not None and value < low) or (high is not None and value > high):
            raise bad(f"must be between {low} and {high}")
        return value
    if base is str:
        if not isinstance(value, str):
            raise bad("must be a string")
        longest = getattr(meta, "max_length", None)
        if longest is not None and len(value) > longest:
            raise bad(f"is longer than {longest} characters")
        pattern = getattr(meta, "pattern", None)
        if pattern is not None and re.search(pattern, value) is None:
            raise bad(f"must match {pattern}")
        return value
    raise bad(f"has a type this materializer cannot read ({describe_type(annotation)})")


def _time(value: Any, bad: Callable[[str], BadQuery]) -> datetime:
    """An ISO-8601 time with offset (epoch milliseconds also accepted)."""
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value / 1000, UTC)
        except (OverflowError, OSError, ValueError):
            raise bad(f"is out of range: {value}") from None
    if not isinstance(value, str):
        raise bad("must be an ISO-8601 time with offset")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise bad(f"is not an ISO-8601 time: {value!r}") from None
    if parsed.tzinfo is None:
        raise bad(f"has no timezone offset: {value!r}")
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise bad(f"is out of range in UTC: {value!r}") from None


# Rows ---------------------------------------------------------------------------------


def money(value: Decimal | int | None) -> Money:
    """A money value, exact, with exactly two decimals."""
    if value is None:
        return Money(Decimal("0.00"))
    return Money(Decimal(value).quantize(_CENT, context=EXACT))


def ratio(amount: Decimal | int | None, count: int) -> Money:
    """``amount / count`` as money, 0 when ``count`` is 0."""
    if not count or amount is None:
        return money(0)
    return money(EXACT.divide(Decimal(amount), count))


def utc(value: datetime | None) -> UtcTime | None:
    """A stored time as UTC with offset, or None."""
    return None if value is None else UtcTime.of(value)


def _converter(annotation: Any) -> Callable[[Any], Any]:
    base, optional, _ = unwrap(annotation)
    if base is Money:
        return money
    if base is dt.datetime:
        return utc if optional else UtcTime.of
    if base in (int, BigInt):
        return (lambda v: None if v is None else int(v)) if optional else int
    if base is bool:
        return bool
    return lambda value: value


_CONVERTERS: dict[type[Row], dict[str, Callable[[Any], Any]]] = {}


def _converters(row_type: type[Row]) -> dict[str, Callable[[Any], Any]]:
    known = _CONVERTERS.get(row_type)
    if known is None:
        known = {f.name: _converter(f.type) for f in msgspec.structs.fields(row_type)}
        _CONVERTERS[row_type] = known
    return known


def rows(row_type: type[R], cur: duckdb.DuckDBPyConnection) -> list[R]:
    """The executed statement's rows as ``row_type``, by column name.

    Columns must be named like the row's fields: a renamed or missing one is an error,
    never a silent null.
    """
    names = [column[0] for column in cur.description or ()]
    convert = _converters(row_type)
    try:
        shapers = [convert[name] for name in names]
    except KeyError as exc:
        raise TypeError(f"{row_type.__name__} has no field {exc}") from None
    return [
        row_type(
            **{name: shape(value) for name, shape, value in zip(names, shapers, row, strict=True)}
        )
        for row in cur.fetchall()
    ]


Shape = type[R] | Callable[[tuple[Any, ...]], R]


def _shaped(cur: duckdb.DuckDBPyConnection, shape: Shape[R]) -> list[R]:
    if isinstance(shape, type) and issubclass(shape, Row):
        return rows(shape, cur)  # type: ignore[arg-type,return-value]
    return [shape(row) for row in cur.fetchall()]  # type: ignore[call-arg,misc]


class Paging(Protocol):
    """Parameters with an offset and a page size (or the N of a top-N list)."""

    offset: int
    limit: int


def _slice(
    cur: duckdb.DuckDBPyConnection, shape: Shape[R], sql: str, args: Sequence[Any], at: int, n: int
) -> list[R]:
    cur.execute(f"{sql} LIMIT ? OFFSET ?", [*args, n, at])
    return _shaped(cur, shape)


def paged(
    cur: duckdb.DuckDBPyConnection, shape: Shape[R], sql: str, args: Sequence[Any], page: Paging
) -> QueryResult[list[R]]:
    """Run ``sql`` (without LIMIT) for one page and say whether more rows follow.

    ``shape`` is a row struct (columns named like its fields) or a function of a row
    tuple, for rows with computed fields.
    """
    found = _slice(cur, shape, sql, args, page.offset, page.limit + 1)
    more = len(found) > page.limit
    return QueryResult(found[: page.limit], page.offset + page.limit if more else None)


def top(
    cur: duckdb.DuckDBPyConnection, shape: Shape[R], sql: str, args: Sequence[Any], page: Paging
) -> QueryResult[list[R]]:
    """The first ``limit`` rows of a top-N list (top products, latest movements…).

    Here ``limit`` is the N the caller asked for, not a page size: no ``next_offset``,
    so a client that follows pages still gets N rows.
    """
    return QueryResult(_slice(cur, shape, sql, args, page.offset, page.limit))
