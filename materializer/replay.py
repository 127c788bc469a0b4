"""Reading the event history back: the stream through an ephemeral pull consumer, the
Parquet archive through DuckDB, and applying both to a store up to a point.

Used by archiving (the stream's messages are what the archive keeps), point-in-time
restore and rebuild (docs/OPERATIONS.md, "Restore" and "Rebuild"). Applying goes
through ``Store.apply_batch``, the code live ingest runs, with the same stream
sequences: the result is what ingest would have built, exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time as clock
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from materializer import archive
from materializer.consumer import _position as position
from materializer.store import RawMessage, Store, header_site
from pulse_bi.contract import STREAM_NAME, STREAM_SUBJECTS

log = logging.getLogger("pulse_bi.materializer.replay")

#: Messages asked for per pull, and applied per transaction during a replay (as many
#: as the default BATCH_MAX_EVENTS: fewer, larger transactions apply faster).
CHUNK = 20_000


@dataclass(frozen=True, slots=True)
class Until:
    """Where a replay stops: after sequence ``sequence``, before stream time ``time``."""

    sequence: int | None = None
    time: datetime | None = None

    def admits(self, message: RawMessage) -> bool:
        """Whether ``message`` is at or before the stopping point."""
        if self.sequence is not None and message.sequence > self.sequence:
            return False
        return self.time is None or message.received_at <= self.time


async def stream_last_sequence(js: JetStreamContext) -> tuple[int, int]:
    """The stream's first and last sequence (0, 0 when it has none)."""
    try:
        info = await js.stream_info(STREAM_NAME)
    except NotFoundError:
        return 0, 0
    return int(info.state.first_seq or 0), int(info.state.last_seq or 0)


async def stream_messages(
    js: JetStreamContext, start: int, last: int, chunk: int = CHUNK, timeout: float = 5.0
) -> AsyncGenerator[list[RawMessage], None]:
    """The stream's messages from ``start`` through ``last``, in chunks, oldest first.

    An ephemeral pull consumer without acks (deleted at the end, and by the server
    after a minute unused should this process die).
    """
    if last < start:
        return
    config = ConsumerConfig(
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=max(1, start),
        ack_policy=AckPolicy.NONE,
        inactive_threshold=60.0,
        max_ack_pending=-1,
    )
    sub = await js.pull_subscribe(STREAM_SUBJECTS[0], stream=STREAM_NAME, config=config)
    try:
        done = False
        expected = max(1, start)
        while not done:
            try:
                # No more than are left: a fetch returns once it has all it asked for.
                wanted = max(1, min(chunk, last - expected + 1))
                msgs = await sub.fetch(wanted, timeout=timeout)
            except TimeoutError:
                # Nothing left to read: the stream ends before ``last`` (deleted tail).
                return
            out: list[RawMessage] = []
            for msg in msgs:
                sequence, nanoseconds = position(msg.reply)
                if sequence > last:
                    done = True
                    break
                out.append(
                    RawMessage(
                        sequence,
                        msg.subject,
                        msg.data,
                        datetime.fromtimestamp(nanoseconds / 1e9, UTC),
                        header_site(msg.headers),
                    )
                )
                if sequence == last:
                    done = True
                    break
            if out:
                expected = out[-1].sequence + 1
                yield out
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
        with contextlib.suppress(Exception):
            await js.delete_consumer(STREAM_NAME, sub._consumer)  # type: ignore[attr-defined]


@dataclass(slots=True)
class Applied:
    """Messages applied from one source, and the seconds it took."""

    messages: int = 0
    seconds: float = 0.0


@dataclass(slots=True)
class ReplayResult:
    """What a replay applied from the archive and from the stream."""

    archive: Applied = field(default_factory=Applied)
    stream: Applied = field(default_factory=Applied)
    last_sequence: int = 0


def _apply(store: Store, messages: list[RawMessage], until: Until) -> tuple[int, bool]:
    """Apply what ``until`` admits; return how many, and whether the stop was reached."""
    kept = [m for m in messages if until.admits(m)]
    if kept:
        store.apply_batch(kept)
    return len(kept), len(kept) < len(messages)


async def replay(
    store: Store,
    js: JetStreamContext | None,
    archive_root: Path | None,
    until: Until,
) -> ReplayResult:
    """Bring ``store`` forward from its last sequence: archived messages first, then the
    stream, stopping at ``until`` (or at the stream's end)."""
    result = ReplayResult()
    stopped = False
    if archive_root is not None:
        started = clock.perf_counter()
        for chunk in archive.messages(archive_root, after=store.last_sequence()):
            count, stopped = await asyncio.to_thread(_apply, store, chunk, until)
            result.archive.messages += count
            if stopped:
                break
        result.archive.seconds = clock.perf_counter() - started
    if not stopped and js is not None:
        started = clock.perf_counter()
        _, last = await stream_last_sequence(js)
        if until.sequence is not None:
            last = min(last, until.sequence)
        chunks = stream_messages(js, store.last_sequence() + 1, last)
        async with contextlib.aclosing(chunks):
            async for chunk in chunks:
                count, stopped = await asyncio.to_thread(_apply, store, chunk, until)
                result.stream.messages += count
                if stopped:
                    break
        result.stream.seconds = clock.perf_counter() - started
    result.last_sequence = store.last_sequence()
    return result
