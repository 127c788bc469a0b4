"""Publish simulated messages to JetStream quickly, at a steady rate or as fast as it goes.

Messages go out as core NATS publishes with a reply subject, so JetStream acknowledges
them while many are in flight (one ``js.publish`` per message would wait a round trip
each). Acks are counted, not parsed: stored, dropped as a duplicate (same Nats-Msg-Id
inside the duplicate window) or refused.

With ``ack_every=n`` only every n-th message (and the last) asks for an ack, which
roughly halves the client's work per message. JetStream stores a connection's messages
in order, so an ack confirms every message before it too; what was stored and what
was dropped is then read from the stream's sequence before and after the run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.errors import Error as JetStreamError

from pulse_bi.contract import STREAM_NAME
from pulse_bi.simulator.events import SimMessage

#: Messages sent and not yet confirmed before the publisher waits for acks.
DEFAULT_MAX_IN_FLIGHT = 20_000
#: How long to wait for acks before giving up.
ACK_TIMEOUT = 30.0


class PublishError(RuntimeError):
    """JetStream refused messages or did not acknowledge them in time."""


@dataclass
class PublishStats:
    """Running totals of one publish run (updated while it runs, for progress displays)."""

    published: int = 0
    #: Messages JetStream has confirmed it handled (stored, dropped or refused).
    acked: int = 0
    #: Messages JetStream stored.
    stored: int = 0
    #: Messages JetStream dropped as duplicates of a stored Nats-Msg-Id.
    duplicates: int = 0
    #: Negative acks (no stream, stream full, …); the first error text is kept.
    errors: int = 0
    first_error: str | None = None
    started: float = field(default_factory=time.perf_counter)
    finished: float | None = None

    @property
    def in_flight(self) -> int:
        """Messages sent and not yet confirmed."""
        return self.published - self.acked

    @property
    def elapsed(self) -> float:
        """Seconds since the run started (until it finished, once it has)."""
        return (self.finished or time.perf_counter()) - self.started

    @property
    def rate(self) -> float:
        """Confirmed messages per second over the run."""
        return self.acked / self.elapsed if self.elapsed > 0 else 0.0


async def publish(
    nc: NATS,
    messages: Iterable[SimMessage],
    *,
    rate: float | None = None,
    ack_every: int = 1,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    stats: PublishStats | None = None,
    stop: asyncio.Event | None = None,
    duration: float | None = None,
    ack_timeout: float = ACK_TIMEOUT,
) -> PublishStats:
    """Publish ``messages`` in order and wait until JetStream confirmed them all.

    ``rate`` caps messages per second (None: as fast as acks allow). ``ack_every`` > 1
    asks for fewer acks (faster) and then counts stored and dropped messages from the
    stream's sequence, which is exact only while nobody else publishes to the stream.
    Setting ``stop`` ends the run with the message in hand; ``duration`` ends it once
    that many seconds have passed since the first message, or, with ``rate``, before the
    first message due after them (so a stalled process that catches up never sends
    more than ``rate * duration`` messages); pass ``stats`` to watch progress. Raises
    PublishError when JetStream refused a message or acks did not come.
    """
    if rate is not None and rate <= 0:
        raise ValueError("rate must be positive")
    if ack_every < 1:
        raise ValueError("ack_every must be at least 1")
    stats = stats if stats is not None else PublishStats()
    stats.started = time.perf_counter()
    sampled = ack_every > 1
    last_sequence = await _stream_last_sequence(nc) if sampled else 0
    room = asyncio.Event()
    done = asyncio.Event()
    low_water = max_in_flight // 2
    inbox = nc.new_inbox() + "."
    sending = True

    async def on_ack(msg: Msg) -> None:
        data = msg.data
        if not data or b'"error"' in data:
            # An empty reply is a status message, e.g. 503 when no stream takes the subject.
            stats.errors += 1
            if stats.first_error is None:
                status = msg.headers.get("Status") if msg.headers else None
                stats.first_error = data.decode(errors="replace") or f"status {status}"
        elif sampled:
            pass  # counted from the stream at the end
        elif b'"duplicate"' in data and b"true" in data:  # spacing varies by server version
            stats.duplicates += 1
        else:
            stats.stored += 1
        # The reply subject ends with the message's position: it and all before are done.
        stats.acked = max(stats.acked, int(msg.subject[len(inbox) :]))
        pending = stats.published - stats.acked
        if pending <= low_water:
            room.set()
        if pending == 0 and not sending:
            done.set()

    # Allow a full window of acks to queue up on the client.
    subscription = await nc.subscribe(
        inbox + "*", cb=on_ack, pending_msgs_limit=max_in_flight + 1000, pending_bytes_limit=-1
    )
    try:
        interval = 1.0 / rate if rate else 0.0
        source = iter(messages)
        message = next(source, None)
        while message is not None:
            # Look one ahead: the last message must ask for an ack to confirm the run.
            position = stats.published + 1
            following = (
                None if _ends(stop, duration, stats, position, interval) else next(source, None)
            )
            if stats.published - stats.acked >= max_in_flight:
                room.clear()
                try:
                    await asyncio.wait_for(room.wait(), ack_timeout)
                except TimeoutError as error:
                    raise PublishError(_no_acks(stats, ack_timeout)) from error
            wants_ack = following is None or position % ack_every == 0
            reply = inbox + str(position) if wants_ack else ""
            await nc.publish(message.subject, message.data, reply=reply, headers=message.headers)
            stats.published = position
            if interval:
                # Pace against the start time, so sleeps that overshoot do not add up.
                ahead = stats.started + position * interval - time.perf_counter()
                if ahead > 0.002:
                    await asyncio.sleep(ahead)
            message = following
        sending = False
        await nc.flush()
        if stats.in_flight > 0:
            try:
                await asyncio.wait_for(done.wait(), ack_timeout)
            except TimeoutError as error:
                raise PublishError(_no_acks(stats, ack_timeout)) from error
        if sampled and not stats.errors:
            stats.stored = await _stream_last_sequence(nc) - last_sequence
            stats.duplicates = stats.published - stats.stored
    finally:
        stats.finished = time.perf_counter()
        await subscription.unsubscribe()
    if stats.errors:
        raise PublishError(
            f"JetStream refused {stats.errors} of {stats.published} messages: {stats.first_error}"
        )
    return stats


def _ends(
    stop: asyncio.Event | None,
    duration: float | None,
    stats: PublishStats,
    position: int,
    interval: float,
) -> bool:
    """Whether the message at ``position`` is the run's last: stopped, or the one after
    it would be sent (or is due, when paced) ``duration`` seconds or more after the first."""
    if stop is not None and stop.is_set():
        return True
    if duration is None:
        return False
    due = position * interval if interval else time.perf_counter() - stats.started
    return due >= duration


async def _stream_last_sequence(nc: NATS) -> int:
    try:
        info = await nc.jetstream().stream_info(STREAM_NAME)
    except JetStreamError as error:
        raise PublishError(f"cannot read stream {STREAM_NAME}: {error}") from error
    return int(info.state.last_seq)


def _no_acks(stats: PublishStats, waited: float) -> str:
    return f"{stats.in_flight} of {stats.published} messages not acknowledged after {waited:g} s"
