"""What every domain module of the schema shares: the context, fetching, row conversion."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated, Any

import strawberry
from strawberry.types import Info as StrawberryInfo

from gateway.budget import Budget
from gateway.limits import check_text_params
from gateway.scalars import UTC, Money, to_money
from gateway.upstream import Upstream
from gateway.versions import QUERY_DEPENDENCIES, Versions


@dataclass
class Context:
    """Per-request context: the way to the data, plus who asks."""

    upstream: Upstream
    versions: Versions
    claims: dict[str, Any] = field(default_factory=dict)
    #: Bytes the response may still take (HTTP requests; None: unbounded).
    budget: Budget | None = None


Info = StrawberryInfo[Context, None]

#: `from` is a Python keyword: the argument is `from_` in Python, `from` in GraphQL.
FromArg = Annotated[
    dt.datetime | None,
    strawberry.argument(name="from", description="Start, inclusive (default: 24 h before `to`)."),
]
ToArg = Annotated[
    dt.datetime | None,
    strawberry.argument(description="End, exclusive (default: the end of the current hour)."),
]


async def fetch(context: Context, name: str, params: dict[str, Any]) -> Any:
    """The data of one named query (charged to the response budget before it is used)."""
    check_text_params(params)
    result = await context.upstream.query(name, params)
    if context.budget is not None:
        context.budget.charge(result.data)
    return result.data


async def live(context: Context, name: str) -> AsyncIterator[None]:
    """Yield now, then each time the aggregates a named query reads have changed."""
    deps = QUERY_DEPENDENCIES[name]
    while True:
        key = context.versions.key(deps)
        yield
        await context.versions.wait_change(deps, key)


def window(start: dt.datetime | None, end: dt.datetime | None) -> tuple[dt.datetime, dt.datetime]:
    """The time range asked for; by default the last 24 hour buckets, the current one included.

    The default is hour-aligned so its result (and cache entry) stays the same within an hour.
    """
    if end is None:
        now = dt.datetime.now(UTC)
        end = now.replace(minute=0, second=0, microsecond=0) + dt.timedelta(hours=1)
    if start is None:
        start = end - dt.timedelta(hours=24)
    return start, end


def iso(value: dt.datetime | dt.date | None) -> str | None:
    """ISO text for a named-query parameter."""
    return None if value is None else value.isoformat()


def money(value: Any) -> Money:
    """Money from the wire's decimal string."""
    return to_money(value if value is not None else 0)


def timestamp(value: Any) -> dt.datetime:
    """An aware UTC datetime from the wire's ISO text."""
    parsed = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def maybe_timestamp(value: Any) -> dt.datetime | None:
    """Like `timestamp`, keeping None."""
    return None if value is None else timestamp(value)


def date(value: Any) -> dt.date:
    """A date from the wire's `YYYY-MM-DD`."""
    return dt.date.fromisoformat(value) if isinstance(value, str) else value
