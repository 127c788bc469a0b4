"""Seeded scenarios: the simulated business's events mixed with duplicates and bad input.

A seed and a time window give the same messages byte for byte, with the same event ids.
Duplicates and bad input draw from their own random stream, so turning them on or off
leaves the business events themselves unchanged (only their times shift).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pulse_bi.simulator.bad import BadInput
from pulse_bi.simulator.events import DUPLICATE_NO_MSG_ID, DUPLICATE_SAME_MSG_ID, SimMessage
from pulse_bi.simulator.world import World

#: Default window the event times of a counted scenario spread over, ending now.
DEFAULT_WINDOW = timedelta(hours=48)
#: Size of the simulated business when the number of events is not known up front.
DEFAULT_SCALE = 50_000


def iter_messages(
    seed: int,
    *,
    clock: Callable[[int], datetime],
    scale: int = DEFAULT_SCALE,
    out_of_order: float = 0.0,
    duplicates: float = 0.0,
    bad: float = 0.0,
) -> Iterator[SimMessage]:
    """Endless messages in publish order; ``clock(i)`` is the event time of message i.

    ``duplicates`` and ``bad`` are the shares of messages that re-send a recent event or
    carry bad input; ``out_of_order`` the share of cancellations and payments published
    before the order or invoice they refer to. ``scale`` sizes the catalog and customers.
    """
    _check_fraction("out_of_order", out_of_order)
    _check_fraction("duplicates", duplicates)
    _check_fraction("bad", bad)
    if duplicates + bad > 1:
        raise ValueError("duplicates + bad must not exceed 1")
    world = World(seed, scale=scale, out_of_order=out_of_order)
    faults = random.Random(f"faults-{seed}")
    bad_input = BadInput(random.Random(f"bad-{seed}"), world)
    resent = 0
    for index in itertools.count():
        now = clock(index)
        roll = faults.random()
        if roll < bad:
            yield bad_input.next_message(now)
        elif roll < bad + duplicates and world.recent:
            original = faults.choice(world.recent)
            # Alternate the two flavours so a run has about as many of each.
            if resent % 2 == 0:
                msg_id, flavour = original.msg_id, DUPLICATE_SAME_MSG_ID
            else:
                msg_id, flavour = None, DUPLICATE_NO_MSG_ID
            yield SimMessage(original.subject, original.data, msg_id, "duplicate", flavour)
            resent += 1
        else:
            yield world.next_message(now)


def window_clock(start: datetime, end: datetime, count: int) -> Callable[[int], datetime]:
    """Event times spread evenly from ``start`` to ``end`` over ``count`` messages."""
    span = end - start
    last = max(count - 1, 1)
    return lambda index: (start + span * (index / last)).replace(microsecond=0)


def live_clock(start: datetime, rate: float) -> Callable[[int], datetime]:
    """Event times that follow the wall clock when ``rate`` messages go out per second."""
    return lambda index: (start + timedelta(seconds=index / rate)).replace(microsecond=0)


def utc_now() -> datetime:
    """The current time in UTC, to the second."""
    return datetime.now(UTC).replace(microsecond=0)


@dataclass
class Scenario:
    """A generated run: the messages in publish order and the window their times span."""

    seed: int
    start: datetime
    end: datetime
    messages: list[SimMessage] = field(default_factory=list)

    def expected(self, as_of: date | None = None) -> dict[str, Any]:
        """Aggregates the materializer must show after consuming these messages.

        ``as_of`` (the AR aging date) defaults to the UTC date of the window's end.
        """
        from pulse_bi.simulator.expected import expected_aggregates

        return expected_aggregates(self.messages, as_of=as_of or self.end.astimezone(UTC).date())


def generate(
    seed: int,
    count: int,
    *,
    out_of_order: float = 0.0,
    duplicates: float = 0.0,
    bad: float = 0.0,
    start: datetime | None = None,
    end: datetime | None = None,
) -> Scenario:
    """``count`` messages of a seeded scenario, event times spread over ``start``..``end``.

    ``end`` defaults to now and ``start`` to 48 hours before ``end``.
    """
    if count < 0:
        raise ValueError("count must not be negative")
    end = (end or utc_now()).astimezone(UTC)
    start = (start or end - DEFAULT_WINDOW).astimezone(UTC)
    if start > end:
        raise ValueError("start must not be after end")
    messages = iter_messages(
        seed,
        clock=window_clock(start, end, count),
        scale=count,
        out_of_order=out_of_order,
        duplicates=duplicates,
        bad=bad,
    )
    return Scenario(seed, start, end, list(itertools.islice(messages, count)))


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, got {value}")
