"""Stream → DuckDB: consume PULSE_EVENTS in batches, commit each batch, announce it.

Why an ordered push consumer and not a durable pull consumer: DuckDB already holds the
last applied stream sequence, written in the same transaction as the data it produced.
That sequence *is* the consumer's position, so a server-side durable consumer with acks
would be a second, weaker copy of it. An ordered consumer (ephemeral, no acks, flow
control, gap detection with automatic reset) started at ``last_sequence + 1`` delivers
about three times the messages per second of a pull ``fetch`` here, and after a crash at
any point the restart resumes exactly after the last committed batch: exactly once.

Back-pressure: nats-py answers JetStream flow control as soon as a message reaches a
subscription callback, so the server never pauses a fast callback, and when the
client's pending queue overflows it drops messages *after* the ordered consumer has
counted them as delivered: they would be lost without a gap ever being noticed. So the
callback never blocks; when the buffer holds three batches the ingestor unsubscribes
(the server forgets the ephemeral consumer) and subscribes again from the sequence after
the last one received once the writer has caught up. A sequence gap (a message that
never arrived) triggers the same resubscription; a gap that is still there afterwards
is real (messages deleted from the stream): it is accepted, and the store records it
with the next batch (``materializer.continuity``).

Before each batch is applied, ``StreamGuard`` confirms the stream is still the one the
file was built from; a replaced stream stops ingest for good. A batch that fails on a
fault (disk full, I/O error, or a bug) is rolled back and retried with exponential
backoff, the store reopened first when DuckDB invalidated it, until it commits: the
process stays up and reports the cause (docs/OPERATIONS.md, "Faults").
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from materializer import faults
from materializer.continuity import StreamGuard
from materializer.metrics import MaterializerMetrics
from materializer.settings import Settings
from materializer.store import BatchResult, RawMessage, Store, header_site
from pulse_bi.contract import STREAM_NAME, STREAM_SUBJECTS
from pulse_bi.tracing import IngestTraces

log = logging.getLogger("pulse_bi.materializer.consumer")

_T = TypeVar("_T")
BatchListener = Callable[[BatchResult], Awaitable[None]]
StoreOpener = Callable[[], Awaitable[Store]]

#: First wait before retrying after a fault; it doubles up to ``FAULT_RETRY_MAX``.
FIRST_RETRY_SECONDS = 0.5
#: Plain checkpoint attempts (one after each batch) before one that waits for the reads.
CHECKPOINT_TRIES = 5


def _position(reply: str) -> tuple[int, int]:
    """Stream sequence and timestamp (ns) from a JetStream ack subject (v1 or v2 form)."""
    tokens = reply.split(".")
    if len(tokens) == 9:  # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>
        return int(tokens[5]), int(tokens[7])
    # $JS.ACK.<domain>.<hash>.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>...
    return int(tokens[7]), int(tokens[9])


class Ingestor:
    """Consumes the event stream and applies it to the store batch by batch."""

    def __init__(
        self,
        js: JetStreamContext,
        store: Store,
        settings: Settings,
        metrics: MaterializerMetrics,
        on_batch: BatchListener,
        guard: StreamGuard,
        reopen: StoreOpener,
    ) -> None:
        self._js = js
        self._store = store
        self._guard = guard
        self._reopen = reopen
        self._store_broken = False
        self._stopped = asyncio.Event()
        self._settings = settings
        self._metrics = metrics
        self._on_batch = on_batch
        self._buffer: list[RawMessage] = []
        #: Traces the events' publishers started (pulse_bi/tracing.py).
        self._traces = IngestTraces()
        self._has_messages = asyncio.Event()
        self._stopping = False
        # Flow control: paused while the buffer is full or a gap is being re-read.
        self._paused = False
        self._flow_lock = asyncio.Lock()
        self._accepted_gap = 0
        self._flow_tasks: set[asyncio.Task[None]] = set()
        #: Times delivery was paused because the writer fell behind, and gaps re-read.
        self.pauses = 0
        self.gaps = 0
        self._subscription: JetStreamContext.PushSubscription | None = None
        self._task: asyncio.Task[None] | None = None
        # One thread: DuckDB writes are serialised anyway, and the store expects one
        # writer thread. DuckDB releases the GIL, so the event loop keeps receiving.
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="duckdb-writer")
        self.last_sequence = store.last_sequence()
        self._last_checkpoint = time.monotonic()
        self._checkpoint_refused = 0
        self._last_received = self.last_sequence
        self.started = asyncio.Event()
        #: Why ingest stopped, when it stopped on an error.
        self.failed: str | None = None
        #: The fault the current batch is being retried for (None once it committed).
        self.fault: str | None = None

    async def start(self) -> None:
        """Subscribe from the sequence after the last committed one and start applying.

        Nothing is subscribed when the stream was replaced: the file must be rebuilt.
        """
        if self._guard.replaced is None:
            await self._subscribe(self.last_sequence + 1)
        self._task = asyncio.create_task(self._apply_loop(), name="materializer-ingest")
        self.started.set()

    async def _subscribe(self, start: int) -> None:
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=start,
            ack_policy=AckPolicy.NONE,
        )
        if start == 1:
            config = ConsumerConfig(deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE)
        self._subscription = await self._js.subscribe(
            STREAM_SUBJECTS[0],
            stream=STREAM_NAME,
            cb=self._receive,
            ordered_consumer=True,
            idle_heartbeat=2.0,
            config=config,
        )
        log.debug("consuming %s from sequence %d", STREAM_NAME, start)

    async def _unsubscribe(self) -> None:
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    async def _pause(self) -> None:
        async with self._flow_lock:
            if self._paused:  # not resumed meanwhile
                await self._unsubscribe()

    def _in_background(self, flow: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(flow)
        self._flow_tasks.add(task)
        task.add_done_callback(self._flow_tasks.discard)

    async def _resume(self) -> None:
        """Subscribe again right after the last message received."""
        async with self._flow_lock:
            if self._stopping or not self._paused or self._guard.replaced is not None:
                return
            await self._unsubscribe()
            while not self._stopping:
                # Unpaused before subscribing: the first messages may arrive before
                # subscribe() returns, and must not be taken for stragglers.
                self._paused = False
                try:
                    await self._subscribe(self._last_received + 1)
                except Exception as exc:  # NATS away or restarting: keep trying
                    self._paused = True
                    log.warning("cannot subscribe to %s yet: %s", STREAM_NAME, exc)
                    await asyncio.sleep(0.5)
                else:
                    return

    async def _receive(self, msg: Msg) -> None:
        if self._paused or self._guard.replaced is not None:
            return  # in flight before the pause; read again on resume
        sequence, timestamp_ns = _position(msg.reply)
        if sequence <= self._last_received:
            return  # delivered again after an ordered-consumer reset
        if sequence != self._last_received + 1 and sequence != self._accepted_gap:
            # Something between was not delivered (dropped on the way): read again
            # from the first missing one. If the gap is still there, it is real.
            log.info("sequence gap %d..%d: reading again", self._last_received + 1, sequence)
            self._accepted_gap = sequence
            self.gaps += 1
            self._paused = True
            self._in_background(self._resume())
            return
        self._last_received = sequence
        if msg.headers:
            self._traces.received(sequence, msg.headers)
        self._buffer.append(
            RawMessage(
                sequence,
                msg.subject,
                msg.data,
                datetime.fromtimestamp(timestamp_ns / 1e9, UTC),
                header_site(msg.headers),
            )
        )
        if len(self._buffer) >= self._settings.batch_max_events:
            self._has_messages.set()
            if len(self._buffer) >= 3 * self._settings.batch_max_events:
                self.pauses += 1
                self._paused = True
                self._in_background(self._pause())
        elif len(self._buffer) == 1:
            self._has_messages.set()

    async def _apply_loop(self) -> None:
        try:
            await self._apply_batches()
        except Exception as exc:
            # Crash-only: nothing of the failed batch was committed; a restart resumes
            # after the last committed one.
            self.failed = f"{type(exc).__name__}: {exc}"
            log.exception("ingest stopped")
            raise

    async def _apply_batches(self) -> None:
        wait = self._settings.batch_max_wait_ms / 1000
        loop = asyncio.get_running_loop()
        while True:
            await self._has_messages.wait()
            if wait and len(self._buffer) < self._settings.batch_max_events and not self._stopping:
                await asyncio.sleep(wait)  # let a burst fill the batch
            batch = self._buffer[: self._settings.batch_max_events]
            del self._buffer[: len(batch)]
            if self._paused and len(self._buffer) < self._settings.batch_max_events:
                await self._resume()
            if not self._buffer:
                self._has_messages.clear()
            if not batch:
                if self._stopping:
                    return
                continue
            if not await self._stream_confirmed():
                if self._guard.replaced is not None:
                    await self._halt()
                return  # stopping: what was not applied is read again after a restart
            started = time.perf_counter()
            # Traced events: one span from the batch's commit to its change notice.
            with self._traces.batch(batch[0].sequence, batch[-1].sequence):
                result = await self._apply_until_committed(loop, batch)
                if result is None:
                    return  # stopping during a fault: the batch was not committed
                self._record(result, time.perf_counter() - started, len(batch))
                await self._checkpoint_when_due()
                try:
                    await self._on_batch(result)
                except Exception:  # a failed notice must not stop ingest
                    log.exception("could not announce batch ending at %d", result.last_sequence)
            if self._stopping and not self._buffer:
                return

    async def _stream_confirmed(self) -> bool:
        """Wait until JetStream confirms the stream is the file's; False when it was
        replaced (``guard.replaced``) or when stopping."""
        delay = FIRST_RETRY_SECONDS
        while True:
            verdict = await self._guard.check(self.last_sequence)
            if verdict is not None:
                return verdict
            log.warning("%s; asking again in %.1f s", self._guard.problem, delay)
            if not await self._wait(delay):
                return False
            delay = min(delay * 2, self._settings.fault_retry_max)

    async def _halt(self) -> None:
        """The stream was replaced: receive and apply nothing more, until stopped."""
        self._paused = True
        async with self._flow_lock:
            await self._unsubscribe()
        self._buffer.clear()
        self._has_messages.clear()
        self._last_received = self.last_sequence
        await self._stopped.wait()

    async def _wait(self, seconds: float) -> bool:
        """Sleep, cut short by ``stop()``; False when stopping."""
        if self._stopping:
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopped.wait(), seconds)
        return not self._stopping

    async def _apply_until_committed(
        self, loop: asyncio.AbstractEventLoop, batch: list[RawMessage]
    ) -> BatchResult | None:
        """Apply ``batch``, retrying with backoff on faults; None when stopped first."""
        delay = FIRST_RETRY_SECONDS
        while True:
            try:
                if self._store_broken:
                    await self._open_again()
                result = await loop.run_in_executor(self._writer, self._store.apply_batch, batch)
            except Exception as exc:
                where = f"applying sequences {batch[0].sequence}-{batch[-1].sequence}"
                await self._on_fault(loop, exc, where, delay)
                if not await self._wait(delay):
                    return None
                delay = min(delay * 2, self._settings.fault_retry_max)
                continue
            if self.fault is not None:
                log.warning(
                    "fault cleared: %s committed",
                    f"sequences {batch[0].sequence}-{batch[-1].sequence}",
                )
                self.fault = None
            return result

    async def _on_fault(
        self, loop: asyncio.AbstractEventLoop, exc: Exception, where: str, delay: float
    ) -> None:
        """Record a fault: health shows its cause, and a store DuckDB invalidated is
        opened again before the next attempt."""
        infrastructure = faults.is_infrastructure(exc)
        cause = faults.describe(exc)
        self.fault = cause if infrastructure else f"internal error {where}: {cause}"
        self._metrics.faults.labels("infrastructure" if infrastructure else "internal").inc()
        if infrastructure:
            log.error("%s failed: %s; retrying in %.1f s", where, cause, delay)
        else:  # a bug, not the machine: keep the traceback
            log.exception("%s failed; retrying in %.1f s", where, delay)
        if not self._store_broken:
            self._store_broken = not await loop.run_in_executor(self._writer, self._usable)

    def _usable(self) -> bool:
        """Whether the store still answers (DuckDB invalidates a database after a fatal error)."""
        try:
            self._store.read(lambda cursor: cursor.execute("SELECT 1").fetchall())
        except Exception:
            return False
        return True

    async def _open_again(self) -> None:
        """Close the invalidated store and open the file again (a fresh DuckDB instance)."""
        log.warning("DuckDB invalidated the database after a fault: opening it again")
        self._store = await self._reopen()
        self._store_broken = False

    async def _checkpoint_when_due(self) -> None:
        """Checkpoint every ``checkpoint_interval`` seconds of ingest (docs/OPERATIONS.md).

        A read running at that moment makes a plain checkpoint fail at once: it is tried
        again after each of the next batches, and the last try waits for the reads.
        The batch before it is committed already; a failed checkpoint (disk full) is a
        fault like a failed batch, and DuckDB usually invalidates the database after
        it: it is opened again (the WAL holds every commit) with backoff until it can be.
        """
        interval = self._settings.checkpoint_interval
        if not interval or time.monotonic() - self._last_checkpoint < interval:
            return
        force = self._checkpoint_refused >= CHECKPOINT_TRIES - 1
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        try:
            done = await loop.run_in_executor(
                self._writer, functools.partial(self._store.checkpoint, force=force)
            )
        except Exception as exc:
            self._last_checkpoint = time.monotonic()
            self._checkpoint_refused = 0
            delay = FIRST_RETRY_SECONDS
            await self._on_fault(loop, exc, "checkpoint", delay)
            while self._store_broken and await self._wait(delay):
                delay = min(delay * 2, self._settings.fault_retry_max)
                try:
                    await self._open_again()
                except Exception as again:
                    await self._on_fault(loop, again, "opening the DuckDB file", delay)
            if not self._store_broken:
                self.fault = None
            return
        if not done:
            self._checkpoint_refused += 1
            self._metrics.checkpoint_retries.inc()
            return
        self._checkpoint_refused = 0
        self._last_checkpoint = time.monotonic()
        self._metrics.checkpoint_seconds.observe(time.perf_counter() - started)

    def _record(self, result: BatchResult, seconds: float, size: int) -> None:
        self.last_sequence = max(self.last_sequence, result.last_sequence)
        m = self._metrics
        for gap in result.gaps:
            log.warning(
                "sequences %d-%d were gone from stream %s: %d events lost (recorded in "
                "stream_gaps, shown by pipeline.gaps)",
                gap.first,
                gap.last,
                STREAM_NAME,
                gap.events,
            )
            m.gaps.inc()
            m.events_missing.inc(gap.events)
        m.events_applied.inc(result.applied)
        m.events_rejected.inc(result.rejected)
        m.events_duplicate.inc(result.duplicates)
        m.batches.inc()
        m.batch_seconds.observe(seconds)
        m.batch_events.observe(size)
        m.last_sequence.set(self.last_sequence)
        log.debug(
            "batch %d-%d: %d applied, %d rejected, %d duplicate in %.1f ms",
            result.first_sequence,
            result.last_sequence,
            result.applied,
            result.rejected,
            result.duplicates,
            seconds * 1000,
        )

    async def between_batches(self, step: Callable[[], _T]) -> _T:
        """Run ``step`` on the writer thread, after the batch being applied commits and
        before the next one starts (backups, retention, compaction)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, step)

    async def wait(self) -> None:
        """Return when ingest ends; raise what stopped it (e.g. a disk error)."""
        assert self._task is not None, "start() first"
        await asyncio.shield(self._task)

    async def stop(self) -> None:
        """Stop receiving, apply and commit what was received, then return."""
        self._stopping = True
        self._stopped.set()
        async with self._flow_lock:
            await self._unsubscribe()
        self._has_messages.set()
        if self._task is not None and not self._task.done():
            await self._task
        self._writer.shutdown(wait=True)
