"""Publish simulated messages to JetStream quickly, at a steady rate or as fast as it goes.

Messages go out as core NATS publishes with a reply inbox, so JetStream acknowledges
every one of them while many are in flight (one ``js.publish`` per message would wait
a round trip each). The acks are counted, not parsed: stored, dropped as duplicate
(same Nats-Msg-Id inside the duplicate window) or failed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from pulse_bi.simulator.events import SimMessage

#: Publishes awaiting their ack before the publisher waits for some to come back.
DEFAULT_MAX_IN_FLIGHT = 20_000
#: How long to wait for the last acks after everything is sent.
ACK_TIMEOUT = 30.0


class PublishError(RuntimeError):
    """JetStream refused messages or did not acknowledge them in time."""


@dataclass
class PublishStats:
    """Running totals of one publish run (updated while it runs, for progress displays)."""

    published: int = 0
    #: Acks of messages JetStream stored.
    stored: int = 0
    #: Acks of messages JetStream dropped as duplicates of a stored Nats-Msg-Id.
    duplicates: int = 0
    #: Negative acks (no stream, stream full, …); the first error text is kept.
    errors: int = 0
    first_error: str | None = None
    started: float = field(default_factory=time.perf_counter)
    finished: float | None = None

    @property
    def acked(self) -> int:
        """Messages JetStream answered, either way."""
        return self.stored + self.duplicates + self.errors

    @property
    def in_flight(self) -> int:
        """Messages sent and not yet acknowledged."""
        return self.published - self.acked

    @property
    def elapsed(self) -> float:
        """Seconds since the run started (until it finished, once it has)."""
        return (self.finished or time.perf_counter()) - self.started

    @property
    def rate(self) -> float:
        """Acknowledged messages per second over the run."""
        return self.acked / self.elapsed if self.elapsed > 0 else 0.0


async def publish(
    nc: NATS,
    messages: Iterable[SimMessage],
    *,
    rate: float | None = None,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    stats: PublishStats | None = None,
    stop: asyncio.Event | None = None,
    ack_timeout: float = ACK_TIMEOUT,
) -> PublishStats:
    """Publish ``messages`` in order and wait until JetStream acknowledged them all.

    ``rate`` caps messages per second (None: as fast as acks allow). Setting ``stop``
    ends the run after the message in hand; pass ``stats`` to watch progress.
    Raises PublishError when JetStream refused any message or acks did not arrive.
    """
    if rate is not None and rate <= 0:
        raise ValueError("rate must be positive")
    stats = stats if stats is not None else PublishStats()
    stats.started = time.perf_counter()
    room = asyncio.Event()
    done = asyncio.Event()
    low_water = max_in_flight // 2
    sending = True

    async def on_ack(msg: Msg) -> None:
        data = msg.data
        if not data or b'"error"' in data:
            # An empty reply is a status message, e.g. 503 when no stream takes the subject.
            stats.errors += 1
            if stats.first_error is None:
                status = msg.headers.get("Status") if msg.headers else None
                stats.first_error = data.decode(errors="replace") or f"status {status}"
        elif b'"duplicate"' in data and b"true" in data:  # spacing varies by server version
            stats.duplicates += 1
        else:
            stats.stored += 1
        pending = stats.in_flight
        if pending <= low_water:
            room.set()
        if pending == 0 and not sending:
            done.set()

    inbox = nc.new_inbox()
    # The server answers every publish on this one subject; allow a full window of acks.
    subscription = await nc.subscribe(
        inbox, cb=on_ack, pending_msgs_limit=max_in_flight * 2 + 1000, pending_bytes_limit=-1
    )
    try:
        interval = 1.0 / rate if rate else 0.0
        for message in messages:
            if stop is not None and stop.is_set():
                break
            if stats.in_flight >= max_in_flight:
                room.clear()
                try:
                    await asyncio.wait_for(room.wait(), ack_timeout)
                except TimeoutError as error:
                    raise PublishError(_no_acks(stats, ack_timeout)) from error
            await nc.publish(message.subject, message.data, reply=inbox, headers=message.headers)
            stats.published += 1
            if interval:
                # Pace against the start time, so sleeps that overshoot do not add up.
                ahead = stats.started + stats.published * interval - time.perf_counter()
                if ahead > 0.002:
                    await asyncio.sleep(ahead)
        sending = False
        await nc.flush()
        if stats.in_flight > 0:
            try:
                await asyncio.wait_for(done.wait(), ack_timeout)
            except TimeoutError as error:
                raise PublishError(_no_acks(stats, ack_timeout)) from error
    finally:
        stats.finished = time.perf_counter()
        await subscription.unsubscribe()
    if stats.errors:
        raise PublishError(
            f"JetStream refused {stats.errors} of {stats.published} messages: {stats.first_error}"
        )
    return stats


def _no_acks(stats: PublishStats, waited: float) -> str:
    return f"{stats.in_flight} of {stats.published} messages not acknowledged after {waited:g} s"
