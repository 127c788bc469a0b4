"""Stream → DuckDB: consume PULSE_EVENTS in batches, commit each batch, announce it.

Why an ephemeral push consumer and not a durable pull consumer: DuckDB already holds the
last applied stream sequence, written in the same transaction as the data it produced.
That sequence *is* the consumer's position, so a server-side durable consumer with acks
would be a second, weaker copy of it. An ephemeral push consumer (no acks, flow control,
idle heartbeats; what nats-py's ordered consumer creates) started at
``last_sequence + 1`` delivers about three times the messages per second of a pull
``fetch`` here, and after a crash at any point the restart resumes exactly after the
last committed batch: exactly once.

Its messages do not go through nats-py's per-message path (a ``Msg``, a header dict, a
queue and a task per message, which cost more than decoding the event): the
connection's parser hands them to ``_deliver`` as raw bytes (``materializer.delivery``),
and this module does what nats-py's ordered consumer did: answer flow control, check
every stream sequence and each idle heartbeat's last consumer sequence, and create the
consumer again when two heartbeat intervals pass without anything (``_watch``).

Back-pressure is JetStream's flow control: nothing blocks the event loop. Flow control is
answered as soon as it arrives while the writer keeps up. Once the buffer holds three
batches (by events or by payload bytes) the answers are held back, so the server stops
delivering, and they go out once the writer has caught up. What arrives meanwhile (what
the server had already queued for the connection) is kept, and the consumer stays the
same: nothing is delivered twice. Should the buffer grow ``HOLD_SPILL_BYTES`` past the
point where the answers were held (a server that does not stop), the ingestor
unsubscribes (the server forgets the ephemeral consumer) and subscribes again from the
sequence after the last one received once the writer has caught up. That used to be
the only pause: the messages still on their way then arrived for a subscription already
gone and were sent, read and dropped, then sent again, 30-47 % as many again as a
catch-up's events (docs/BENCHMARKS.md, "Paused by flow control"). A sequence gap (a
message that never arrived) triggers the same resubscription; a gap that is still there
afterwards is real (messages deleted from the stream): it is accepted, and the store
records it with the next batch (``materializer.continuity``).

After each (re)subscription, before the first batch holding its messages is applied,
``StreamGuard`` confirms the stream is still the one the file was built from (a
consumer only ever delivers the stream it was created on); the heartbeats check it too.
A replaced stream stops ingest for good. A batch that fails on a
fault (disk full, I/O error, or a bug) is rolled back and retried with exponential
backoff, the store reopened first when DuckDB invalidated it, until it commits: the
process stays up and reports the cause (docs/OPERATIONS.md, "Faults").
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from nats.aio.client import Client
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, Header

from materializer import db, faults
from materializer.continuity import StreamGuard
from materializer.delivery import header_values, status_of, tap
from materializer.metrics import MaterializerMetrics
from materializer.settings import Settings
from materializer.store import BatchResult, RawMessage, Store, header_site
from pulse_bi.contract import SITE_HEADER, STREAM_NAME, STREAM_SUBJECTS
from pulse_bi.tasks import cancel_until_done
from pulse_bi.tracing import IngestTraces

log = logging.getLogger("pulse_bi.materializer.consumer")

_T = TypeVar("_T")
BatchListener = Callable[[BatchResult], Awaitable[None]]
StoreOpener = Callable[[], Awaitable[Store]]

#: First wait before retrying after a fault; it doubles up to ``FAULT_RETRY_MAX``.
FIRST_RETRY_SECONDS = 0.5
#: Idle heartbeat interval of the consumer; two without anything mean it is gone.
HEARTBEAT_SECONDS = 2.0
#: Shortest header block with a valid W3C ``traceparent`` (its value is 55 characters):
#: ``NATS/1.0\r\ntraceparent:<value>\r\n\r\n``.
MIN_TRACED_HEADERS = len(b"NATS/1.0\r\ntraceparent:\r\n\r\n") + 55
_SITE_NAME = SITE_HEADER.encode()
#: Distinct subjects whose decoded name is kept for reuse.
MAX_SUBJECTS = 1024
#: Payload bytes of a batch (its first message whatever its size); delivery pauses at
#: three batches' worth, as at three times ``batch_max_events``: events near the 1 MiB
#: limit must not make one batch, or the buffer, tens of GiB (docs/OPERATIONS.md).
BATCH_MAX_BYTES = 64 * 1024 * 1024
#: Payload bytes arriving after the flow-control answers were held back beyond which the
#: ingestor stops delivery by unsubscribing: the buffer holds three batches and at most
#: this much more (each limit crossed by one message). What arrives is what the server
#: had already queued for the connection: the buffer grew 19.3-19.5 MiB past a pause in
#: 500,000-event catch-ups on two cores (docs/BENCHMARKS.md, "Paused by flow control").
HOLD_SPILL_BYTES = 32 * 1024 * 1024
#: Plain checkpoint attempts (one after each batch) before one that waits for the reads.
CHECKPOINT_TRIES = 5
#: Seconds without a message after which ingest counts as idle: then a WAL of a quarter
#: of the threshold or more, or one older than the interval, is checkpointed at once
#: instead of after some later batch (docs/OPERATIONS.md, "Checkpoints").
IDLE_SECONDS = 1.0
#: Events applied after which the next idle spell hands memory back
#: (``Store.release_memory``, docs/OPERATIONS.md "Memory"): once after a catch-up or a
#: burst, not after every quiet second of a trickle (each time, the queries that follow
#: read the file's blocks again).
RELEASE_AFTER_EVENTS = 50_000


def consumer_config(inbox: str, start: int) -> ConsumerConfig:
    """The ingestor's consumer: ephemeral, push to ``inbox`` from stream sequence
    ``start``, flow control and idle heartbeats, no acks, memory storage, one replica
    (what nats-py's ordered consumer creates)."""
    config = ConsumerConfig(
        deliver_subject=inbox,
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=start,
        filter_subject=STREAM_SUBJECTS[0],
        ack_policy=AckPolicy.NONE,
        max_deliver=1,
        ack_wait=22 * 3600,
        flow_control=True,
        idle_heartbeat=HEARTBEAT_SECONDS,
        num_replicas=1,
        mem_storage=True,
    )
    if start == 1:
        config.deliver_policy, config.opt_start_seq = DeliverPolicy.ALL, None
    return config


def _position(reply: str) -> tuple[int, int]:
    """Stream sequence and timestamp (ns) from a JetStream ack subject (v1 or v2 form)."""
    sequence, _, timestamp_ns = _ack_position(reply.encode())
    return sequence, timestamp_ns


def _ack_position(reply: bytes) -> tuple[int, int, int]:
    """Stream sequence, consumer sequence and timestamp (ns) from a JetStream ack
    subject (v1 or v2 form)."""
    tokens = reply.split(b".")
    if len(tokens) == 9:  # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>
        return int(tokens[5]), int(tokens[6]), int(tokens[7])
    # $JS.ACK.<domain>.<hash>.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>...
    return int(tokens[7]), int(tokens[8]), int(tokens[9])


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
        # The consumer's connection; its parser hands our messages over as raw bytes.
        self._nc: Client = js._nc
        self._parser = tap(self._nc)
        self._subjects: dict[bytes, str] = {}
        #: Consumer sequence of the last delivery (ASCII digits), for the idle heartbeats.
        self._delivered = b"0"
        self._active = False
        self._store = store
        self._guard = guard
        self._reopen = reopen
        self._store_broken = False
        self._stopped = asyncio.Event()
        self._settings = settings
        self._batch_max = settings.batch_max_events
        self._metrics = metrics
        self._on_batch = on_batch
        self._buffer: list[RawMessage] = []
        self._buffered_bytes = 0  # payload bytes in ``_buffer``
        #: Traces the events' publishers started (pulse_bi/tracing.py).
        self._traces = IngestTraces()
        self._has_messages = asyncio.Event()
        self._stopping = False
        # Flow control: the subjects of the answers held while the buffer is full, each
        # once (None: answered at once), and the buffer's payload bytes when first held.
        self._held: dict[str, None] | None = None
        self._held_at_bytes = 0
        # Unsubscribed: while a gap is being re-read, or the buffer outgrew a hold.
        self._paused = False
        self._flow_lock = asyncio.Lock()
        self._accepted_gap = 0
        self._flow_tasks: set[asyncio.Task[None]] = set()
        #: Times delivery was paused because the writer fell behind (flow control held, or
        #: unsubscribed), and gaps re-read.
        self.pauses = 0
        self.gaps = 0
        #: Flow-control answers held back while the buffer was full, and the most the
        #: buffer's payload bytes grew past the point where they were first held (what
        #: the server had queued).
        self.held_answers = 0
        self.held_peak_bytes = 0
        #: ``strays`` already counted in the metrics.
        self._strays_counted = self._parser.strays
        self._subscription: Subscription | None = None
        #: Subscriptions started, and the one whose consumer existed when the stream was
        #: last confirmed: later batches need no check until the next one (_confirm).
        self._subscriptions = 0
        self._created = 0
        self._confirmed = 0
        self._task: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        # One thread: DuckDB writes are serialised anyway, and the store expects one
        # writer thread. DuckDB releases the GIL, so the event loop keeps receiving.
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="duckdb-writer")
        self.last_sequence = store.last_sequence()
        self._last_checkpoint = time.monotonic()
        self._checkpoint_refused = 0
        #: Messages applied since memory was last handed back (``RELEASE_AFTER_EVENTS``).
        self._applied_since_release = 0
        self._wal = db.wal_path(settings.duckdb_path)
        self._wal_threshold = settings.checkpoint_threshold_bytes
        self._last_received = self.last_sequence
        self.started = asyncio.Event()
        #: Why ingest stopped, when it stopped on an error.
        self.failed: str | None = None
        #: The fault the current batch is being retried for (None once it committed).
        self.fault: str | None = None

    @property
    def strays(self) -> int:
        """Messages that arrived for a subscription already unsubscribed: read again from
        the next one (``TapParser.strays``)."""
        return self._parser.strays

    async def start(self) -> None:
        """Subscribe from the sequence after the last committed one and start applying.

        Nothing is subscribed when the stream was replaced: the file must be rebuilt.
        """
        if self._guard.replaced is None:
            await self._subscribe(self.last_sequence + 1)
        self._task = asyncio.create_task(self._apply_loop(), name="materializer-ingest")
        self._watcher = asyncio.create_task(self._watch(), name="materializer-heartbeats")
        self.started.set()

    async def _subscribe(self, start: int) -> None:
        """Create an ephemeral push consumer from ``start`` and tap its deliveries.

        The consumer is what nats-py's ordered consumer creates (flow control, idle
        heartbeats, no acks, memory storage, one replica); its messages reach
        ``_deliver`` as raw bytes (``materializer.delivery``).
        """
        self._subscriptions += 1
        generation = self._subscriptions
        inbox = self._nc.new_inbox()
        subscription = await self._nc.subscribe(inbox)
        self._parser.add(subscription._id, self._deliver, self._receive)
        self._delivered = b"0"
        if self._held:  # answers a former consumer asked for
            self._held.clear()
        config = consumer_config(inbox, start)
        self._subscription = subscription
        try:
            await self._js.add_consumer(STREAM_NAME, config)
        except BaseException:
            await self._unsubscribe()
            raise
        self._created = max(self._created, generation)
        log.debug("consuming %s from sequence %d", STREAM_NAME, start)

    async def _unsubscribe(self) -> None:
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            # Nothing more reaches ``_deliver``; the server forgets the ephemeral
            # consumer once its subscription is gone.
            self._parser.drop(subscription._id)
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

    def _deliver(self, subject: bytes, reply: bytes, headers: bytes | None, payload: bytes) -> None:
        """A frame of the tapped subscription that is not a usual JetStream delivery
        (``_receive`` takes those): control messages, or an ack subject of another form."""
        self._active = True
        if not reply.startswith(b"$JS.ACK."):
            if headers is not None:
                self._control(reply, headers)
            return
        try:
            sequence, delivered, timestamp_ns = _ack_position(reply)
        except (IndexError, ValueError):
            # Not an ack subject nats-server writes. Ignoring it loses nothing: were it a
            # delivery, the next one's sequence would show the gap and read it again.
            log.warning("ignored a message on the consumer's inbox with reply %.200r", reply)
            return
        self._receive(subject, sequence, b"%d" % delivered, b"%d" % timestamp_ns, headers, payload)

    def _receive(
        self,
        subject: bytes,
        sequence: int,
        delivered: bytes,
        timestamp: bytes,
        headers: bytes | None,
        payload: bytes,
    ) -> None:
        """One JetStream delivery, in order, on the event loop (``materializer.delivery``).

        This runs for every message while the writer thread applies the batch before:
        both share the GIL, so it does as little as it can (the consumer sequence is
        kept as digits for the next heartbeat, the timestamp as nanoseconds for
        ``RawMessage.received_at``).
        """
        self._active = True
        if self._paused or self._guard.replaced is not None:
            return  # in flight before the pause; read again on resume
        self._delivered = delivered
        last = self._last_received
        if sequence != last + 1:
            if sequence <= last:
                return  # delivered again after a resubscription
            if sequence != self._accepted_gap:
                # Something between was not delivered (dropped on the way): read again
                # from the first missing one. If the gap is still there, it is real.
                log.info("sequence gap %d..%d: reading again", last + 1, sequence)
                self._accepted_gap = sequence
                self.gaps += 1
                self._read_again()
                return
        self._last_received = sequence
        site = None
        if headers is not None:
            # Header names are case-insensitive. A block too short to hold a valid
            # traceparent (most events carry only Nats-Msg-Id) is not searched.
            if (
                len(headers) >= MIN_TRACED_HEADERS
                and self._traces.enabled
                and b"traceparent" in headers.lower()
            ):
                self._traces.received(sequence, header_values(headers))
            if _SITE_NAME in headers:  # most events: no site, one search
                site = header_site(headers)
        name = self._subjects.get(subject)
        if name is None:
            name = subject.decode(errors="replace")
            if len(self._subjects) < MAX_SUBJECTS:
                self._subjects[subject] = name
        buffer = self._buffer
        buffer.append(RawMessage(sequence, name, payload, int(timestamp), site))
        buffered = len(buffer)
        self._buffered_bytes += len(payload)
        if buffered >= self._batch_max or self._buffered_bytes >= BATCH_MAX_BYTES:
            self._has_messages.set()
            if buffered >= 3 * self._batch_max or self._buffered_bytes >= 3 * BATCH_MAX_BYTES:
                self._hold()
        elif buffered == 1:
            self._has_messages.set()

    def _hold(self) -> None:
        """The buffer is full: hold flow-control answers back, so the server stops once
        its window is full; unsubscribe should it send ``HOLD_SPILL_BYTES`` more."""
        if self._held is None:
            self.pauses += 1
            self._metrics.delivery_pauses.inc()
            self._held = {}
            self._held_at_bytes = self._buffered_bytes
            return
        grown = self._buffered_bytes - self._held_at_bytes
        if grown > self.held_peak_bytes:
            self.held_peak_bytes = grown
        if grown > HOLD_SPILL_BYTES and not self._paused:
            log.warning(
                "%s kept delivering with flow control held back: unsubscribing", STREAM_NAME
            )
            self._paused = True
            self._in_background(self._pause())

    def _release(self) -> None:
        """The writer caught up: answer the flow control held back, and answer at once again."""
        held, self._held = self._held, None
        for subject in held or ():
            self._in_background(self._nc.publish(subject))

    def _answer(self, subject: str) -> None:
        """Answer a flow-control request (or a stalled consumer's heartbeat), or hold the
        answer while the buffer is full."""
        if self._held is not None:
            self._held[subject] = None
            self.held_answers += 1
        else:
            self._in_background(self._nc.publish(subject))

    def _read_again(self) -> None:
        """Subscribe again from the message after the last one received."""
        self._paused = True
        self._in_background(self._resume())

    def _control(self, reply: bytes, headers: bytes) -> None:
        """Answer JetStream flow control and check idle heartbeats, as nats-py's ordered
        consumer does."""
        status = status_of(headers)
        if not status.startswith(b"100"):
            return
        if b"FlowControl" in status:
            if reply:
                self._answer(reply.decode())
            return
        values = header_values(headers)
        stalled = values.get(Header.CONSUMER_STALLED)
        if stalled:
            self._answer(stalled)
        last = values.get(Header.LAST_CONSUMER)
        if (
            last is not None
            and last.isdigit()
            and int(last) != int(self._delivered)
            and not self._paused
        ):
            # The server delivered more than arrived: messages were lost on the way.
            log.info(
                "idle heartbeat says %s delivered, %s arrived: reading again",
                last,
                self._delivered.decode(),
            )
            self._read_again()

    async def _watch(self) -> None:
        """Subscribe again when neither a message nor a heartbeat arrived for two
        heartbeat intervals (the consumer is gone, e.g. after a reconnection)."""
        while not self._stopping:
            await asyncio.sleep(2 * HEARTBEAT_SECONDS)
            if not self._active and self._subscription is not None and not self._paused:
                log.info("no message or heartbeat from %s: subscribing again", STREAM_NAME)
                self._read_again()
            self._active = False

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
            idle = await self._wait_for_messages()
            if (
                wait
                and not idle
                and len(self._buffer) < self._settings.batch_max_events
                and not self._stopping
            ):
                # Behind: messages were waiting when the writer came free. Pause, so the
                # reads the last notice set off run alone and the batch fills; a message
                # that finds the writer idle is taken at once (docs/OPERATIONS.md,
                # "Batches").
                await asyncio.sleep(wait)
            batch = self._take()
            if (
                len(self._buffer) < self._settings.batch_max_events
                and self._buffered_bytes < BATCH_MAX_BYTES
            ):
                if self._held is not None:
                    self._release()
                if self._paused:
                    await self._resume()
            if not self._buffer:
                self._has_messages.clear()
            if not batch:
                if self._stopping:
                    return
                continue
            if not await self._confirm():
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
                try:
                    await self._on_batch(result)
                except Exception:  # a failed notice must not stop ingest
                    log.exception("could not announce batch ending at %d", result.last_sequence)
            # Let the batch and its result go before waiting for the next: kept over an
            # idle spell, its messages pin the memory they were allocated in, and its
            # result the ids its changes name (docs/OPERATIONS.md, "Memory").
            del batch, result
            # After the notice: a fold or a checkpoint changes no answer, and must not
            # delay one.
            await self._fold_when_due()
            await self._checkpoint_when_due()
            if self._stopping and not self._buffer:
                return

    def _take(self) -> list[RawMessage]:
        """The next batch off the buffer: ``batch_max_events`` messages at most, and no
        more than ``BATCH_MAX_BYTES`` of payload past its first message."""
        size = self._settings.batch_max_events
        if len(self._buffer) <= size and self._buffered_bytes <= BATCH_MAX_BYTES:
            batch, self._buffer, self._buffered_bytes = self._buffer, [], 0
            return batch
        count = total = 0
        for message in itertools.islice(self._buffer, size):
            if count and total + len(message.data) > BATCH_MAX_BYTES:
                break
            count += 1
            total += len(message.data)
        batch = self._buffer[:count]
        del self._buffer[:count]
        self._buffered_bytes -= total
        return batch

    async def _confirm(self) -> bool:
        """Whether the batch just taken may be applied: False when the stream was
        replaced (``guard.replaced``, also set by the heartbeats) or when stopping.

        A consumer delivers only the stream it was created on, and deleting a stream
        deletes its consumers: so one confirmation asked after a consumer was created
        covers every message it delivers (docs/OPERATIONS.md, "Stream check per
        subscription"). The batch's messages were all received before the question, so
        the answer covers the consumers that delivered them. A subscription whose
        consumer creation had not returned yet when the question was asked is confirmed
        again with the next batch.
        """
        if self._guard.replaced is not None:
            return False
        if self._confirmed == self._subscriptions:
            return True
        created = self._created  # consumers that surely exist before the question
        if not await self._stream_confirmed():
            return False
        self._confirmed = max(self._confirmed, created)
        return True

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
        self._held = None
        async with self._flow_lock:
            await self._unsubscribe()
        self._buffer.clear()
        self._buffered_bytes = 0
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

    async def _wait_for_messages(self) -> bool:
        """Wait for the next messages; checkpoint meanwhile once ingest is idle. True
        when there were none to take at first (the writer was idle), False when messages
        were already waiting.

        After a catch-up or a burst, the rows committed since the last checkpoint would
        otherwise stay in DuckDB's memory and in the WAL until some later batch: for as
        long as the warehouse is quiet.
        """
        idle = not self._has_messages.is_set()
        while not self._has_messages.is_set():
            try:
                async with asyncio.timeout(IDLE_SECONDS):
                    await self._has_messages.wait()
            except TimeoutError:
                await self._checkpoint_when_due(idle=True)
                await self._release_memory_when_due()
        return idle

    async def _release_memory_when_due(self) -> None:
        """After ``RELEASE_AFTER_EVENTS`` applied, hand memory back on the writer thread;
        tried again each idle second while reads keep it from running."""
        if self._applied_since_release < RELEASE_AFTER_EVENTS or self._store_broken:
            return
        loop = asyncio.get_running_loop()
        try:
            released = await loop.run_in_executor(self._writer, self._store.release_memory)
        except Exception as exc:  # its checkpoint failed: the next batch meets the fault
            log.warning("could not hand memory back: %s", faults.describe(exc))
            self._applied_since_release = 0  # not again before the next burst
            return
        if released:
            self._applied_since_release = 0
            self._metrics.memory_releases.inc()

    async def _fold_when_due(self) -> None:
        """Fold the aggregate deltas into their bases once they are due
        (``Store.fold_when_due``), after the change notice of the batch that filled them.

        A failed fold is left to the next batch: ``Store.apply_batch`` folds first while
        the deltas are due, under the batch's own fault handling and retries. When no
        fold is due the writer thread is not asked at all: a round trip to it after
        every batch delayed the next batch under load.
        """
        if not self._store.fold_due:
            return
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            folded = await loop.run_in_executor(self._writer, self._store.fold_when_due)
        except Exception as exc:
            log.warning(
                "could not fold the aggregate deltas, the next batch tries: %s",
                faults.describe(exc),
            )
            return
        if folded:
            self._metrics.fold_seconds.observe(time.perf_counter() - started)

    def _checkpoint_due(self, *, idle: bool = False) -> bool:
        try:
            wal = self._wal.stat().st_size
        except FileNotFoundError:  # no commit since the last checkpoint
            wal = 0
        interval = self._settings.checkpoint_interval
        if interval and time.monotonic() - self._last_checkpoint >= interval:
            return wal > 0 or not idle
        return wal >= (self._wal_threshold // 4 if idle else self._wal_threshold)

    async def _checkpoint_when_due(self, *, idle: bool = False) -> None:
        """Checkpoint when the WAL reaches ``duckdb_checkpoint_threshold`` or every
        ``checkpoint_interval`` seconds of ingest; when ``idle``, from a quarter of the
        threshold, or past the interval with anything in the WAL (docs/OPERATIONS.md,
        "Checkpoints").

        A read running at that moment makes a plain checkpoint fail at once: it is tried
        again after each of the next batches, and the last try waits for the reads.
        The batch before it is committed already; a failed checkpoint (disk full) is a
        fault like a failed batch, and DuckDB usually invalidates the database after
        it: it is opened again (the WAL holds every commit) with backoff until it can be.
        """
        if not self._checkpoint_due(idle=idle):
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
        self._applied_since_release += size
        m = self._metrics
        strays = self._parser.strays
        if strays > self._strays_counted:
            m.messages_received_again.inc(strays - self._strays_counted)
            self._strays_counted = strays
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
        if self._watcher is not None:
            await cancel_until_done([self._watcher])
        async with self._flow_lock:
            await self._unsubscribe()
        self._has_messages.set()
        if self._task is not None and not self._task.done():
            await self._task
        self._writer.shutdown(wait=True)
