"""The tests' guard against the wall clock turning an hour while they run.

A test that times its events "now" and then looks at the current hour (or day, or
anything keyed by the hour: an ETag, a live query's moving window) by a later reading
of the clock fails when an hour turns in between. Such a test waits first, while the
current hour ends within ``HOUR_MARGIN``.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

#: How close to the turn of an hour a test may start: longer than what such a test
#: does between taking the time and checking what depends on it.
HOUR_MARGIN = timedelta(seconds=90)


def wait_for_the_hour(now: datetime) -> float:
    """Seconds to wait at ``now`` before publishing: into the next hour when this one
    ends within ``HOUR_MARGIN``, else none."""
    left = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1) - now
    return left.total_seconds() + 1 if left < HOUR_MARGIN else 0.0


async def clear_of_the_hour() -> None:
    """Wait for the next hour when this one ends within ``HOUR_MARGIN``."""
    wait = wait_for_the_hour(datetime.now(UTC))
    if wait:
        await asyncio.sleep(wait)
