"""What every field of the schema shares: the context, fetching, live changes, windows."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
from strawberry.types import Info as StrawberryInfo

from gateway.budget import Budget
from gateway.limits import check_text_params
from gateway.scalars import UTC
from gateway.upstream import Upstream
from gateway.versions import Versions
from pulse_bi.contract import QuerySpec

D = TypeVar("D")


@dataclass
class Context:
    """Per-request context: the way to the data, plus who asks."""

    upstream: Upstream
    versions: Versions
    claims: dict[str, Any] = field(default_factory=dict)
    #: Bytes the response may still take (HTTP requests; None: unbounded).
    budget: Budget | None = None


Info = StrawberryInfo[Context, None]


async def fetch(
    context: Context, spec: QuerySpec[Any, D], params: msgspec.Struct, *, follow: bool = True
) -> D:
    """The typed data of one named query (charged to the response budget before use): a
    paged list whole, or only the page ``params`` ask for when ``follow`` is false."""
    check_text_params(msgspec.structs.asdict(params))
    result = await context.upstream.query(spec.name, params, follow=follow)
    if context.budget is not None:
        context.budget.charge(result.data)
    return result.data  # type: ignore[no-any-return]


async def live(context: Context, spec: QuerySpec) -> AsyncIterator[None]:  # type: ignore[type-arg]
    """Yield now, then each time the topics a named query reads have changed."""
    while True:
        key = context.versions.key(spec.reads)
        yield
        await context.versions.wait_change(spec.reads, key)


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
