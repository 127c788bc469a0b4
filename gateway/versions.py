"""What changed and when: per-aggregate generations from the materializer's change notices.

The result caches are keyed by the generations of the aggregates a query reads, so a
dashboard refresh between two changes never reaches DuckDB, and a change to stock does
not evict sales results. Generations are the gateway's own counters (not stream
sequences), so a materializer rebuilt from scratch cannot make a stale entry look fresh.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Iterable, Mapping
from typing import Any

from pulse_bi.contract import BY_FIELD, BY_NAME, TOPICS, ChangeNotice, QuerySpec

#: What the gateway keeps a generation of: the change topics of the notices.
TRACKED = TOPICS


def reads(name: str) -> tuple[str, ...] | None:
    """The topics a named query reads; None for a name the registry does not know.

    Unknown names fail closed: their results are never cached and their live queries
    refresh on every notice.
    """
    spec = BY_NAME.get(name)
    return None if spec is None else spec.reads


def touched(notice: ChangeNotice) -> set[str]:
    """The tracked topics one change notice touched."""
    return notice.topics()


class Versions:
    """Per-aggregate generations, advanced by change notices and version heartbeats."""

    def __init__(self, ttl: float = 6.0) -> None:
        #: Seconds without a notice or heartbeat after which nothing counts as cached.
        self.ttl = ttl
        #: Last materializer version seen; None until the first notice or heartbeat.
        self.seen: int | None = None
        self.last_heard = 0.0
        self.notices = 0
        self.gaps = 0
        self._counter = 0
        self._generation = dict.fromkeys(TRACKED, 0)
        self._changed = asyncio.Event()

    @property
    def known(self) -> bool:
        """True while notices or heartbeats arrive; otherwise nothing may be served cached.

        Heartbeats are the materializer's sign of life: when they stop (materializer or
        NATS down) cached results could hide the outage or changes, so they stop counting.
        """
        return self.seen is not None and time.monotonic() - self.last_heard < self.ttl

    def key(self, aggregates: Iterable[str]) -> tuple[int, ...] | None:
        """Cache key part for data read from these aggregates; None means do not cache."""
        if not self.known:
            return None
        return tuple(self._generation[a] for a in aggregates)

    def observe(self, notice: ChangeNotice) -> set[str] | None:
        """Apply one notice; return the aggregates it changed, or None for "all may have"."""
        self.notices += 1
        stale = not self.known
        self.last_heard = time.monotonic()
        previous, self.seen = self.seen, notice.version
        if previous is None or stale:
            # First sign of life (or after silence): cached results are of unknown age.
            self.bump(TRACKED)
            return None
        if notice.kind == "heartbeat":
            if notice.version == previous:
                return set()
            # A version we got no change notice for: a notice was lost, refresh all.
            self.gaps += 1
            self.bump(TRACKED)
            return None
        if notice.previous_version is not None and notice.previous_version != previous:
            self.gaps += 1
            self.bump(TRACKED)
            return None
        names = touched(notice)
        self.bump(names)
        return names

    def bump(self, aggregates: Iterable[str]) -> None:
        """Give these aggregates a new generation and wake whoever waits for a change."""
        for name in aggregates:
            self._counter += 1
            self._generation[name] = self._counter
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_change(self, aggregates: tuple[str, ...], since: tuple[int, ...] | None) -> None:
        """Return once the generations of these aggregates differ from `since`."""
        while self.key(aggregates) == since or self.key(aggregates) is None:
            await self._changed.wait()


def _hours(notice: ChangeNotice) -> list[dt.datetime]:
    hours = []
    for text in notice.changes.sales_hours:
        try:
            hours.append(dt.datetime.fromisoformat(text))
        except ValueError:
            continue
    return hours


def relevant(field: str, args: Mapping[str, Any], notice: ChangeNotice, names: set[str]) -> bool:
    """Whether a change notice may change the result of one root field with these arguments.

    Decided by the field's ``QuerySpec`` (``reads``, ``always``, ``filters``, ``window``);
    a field the registry does not know always counts. Errs on the side of True: a
    needless refresh costs one query, a missed one is a bug.
    """
    spec = BY_FIELD.get(field)
    if spec is None:
        return True
    return spec_relevant(spec, args, notice, names)


def spec_relevant(
    spec: QuerySpec,  # type: ignore[type-arg]
    args: Mapping[str, Any],
    notice: ChangeNotice,
    names: set[str],
) -> bool:
    """``relevant`` for one spec, with the field's GraphQL arguments."""
    if not names.intersection(spec.reads):
        return False
    changes = notice.changes
    if any(getattr(changes, flag) for flag in spec.always):
        return True
    for param, key in spec.filters.items():
        wanted = args.get(spec.graphql_arg(param))
        listed = getattr(changes, key)
        if wanted is not None and listed and wanted not in listed:
            return False
    if spec.window is None:
        return True
    hours = _hours(notice)
    if not hours:
        return True
    start, end = (args.get(spec.graphql_arg(p)) for p in spec.window)
    return any((start is None or h >= _floor(start)) and (end is None or h < end) for h in hours)


def _floor(value: dt.datetime) -> dt.datetime:
    return value.replace(minute=0, second=0, microsecond=0)
