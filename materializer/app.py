"""The materializer process: resources opened in order, closed in reverse.

``Materializer`` is an async context manager so the CLI, the tests and the benchmarks
run the same thing: open the DuckDB store, connect to NATS, make sure the stream exists,
start ingest, the query service, the heartbeat and the HTTP server; on exit stop
receiving, commit what was received, and close everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from materializer import continuity, db
from materializer.aggregates import pipeline
from materializer.consumer import Ingestor
from materializer.http import HttpServer
from materializer.lifecycle import Lifecycle
from materializer.memory import limit_malloc_arenas
from materializer.metrics import MaterializerMetrics
from materializer.queries import QueryContext
from materializer.readiness import ReadGate
from materializer.service import QueryService
from materializer.settings import Settings
from materializer.store import BatchResult, Store
from pulse_bi.contract import CHANGES_SUBJECT, ChangeNotice, notice_encoder
from pulse_bi.natsclient import client_options
from pulse_bi.streams import ensure_stream
from pulse_bi.tasks import cancel_until_done
from pulse_bi.tracing import current_headers

log = logging.getLogger("pulse_bi.materializer")
#: Seconds between two progress lines while the materializer is behind the stream.
PROGRESS_INTERVAL = 5.0
#: Events behind the stream that count as catching up (live traffic is a few behind).
PROGRESS_MIN_LAG = 1000


class Materializer:
    """A running materializer (use ``async with Materializer(settings) as m``)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        limit_malloc_arenas(settings.malloc_arena_max)
        self.metrics = MaterializerMetrics()
        self.store: Store | None = None
        self.nc: NATS | None = None
        self.js: JetStreamContext | None = None
        self._control: NATS | None = None
        self.ingestor: Ingestor | None = None
        self.service: QueryService | None = None
        self.http: HttpServer | None = None
        self.lifecycle: Lifecycle | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._notice_version = 0
        self._stream_last_sequence = 0
        self._sequence_changed = asyncio.Condition()
        self.guard: continuity.StreamGuard | None = None
        #: What start-up is doing (logged when a signal stops it half-way).
        self.starting_step = "not started"
        self.read_gate: ReadGate | None = None

    async def __aenter__(self) -> Materializer:
        try:
            await self._open()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _open(self) -> None:
        s = self.settings
        s.duckdb_path.parent.mkdir(parents=True, exist_ok=True)
        self.starting_step = f"opening {s.duckdb_path}"
        self.store = await asyncio.to_thread(self._open_store)
        self._notice_version = self.store.last_sequence()
        self.starting_step = f"connecting to NATS at {s.nats_url}"
        self.nc = await nats.connect(
            **client_options(s.nats_url, "pulse-bi-materializer"),
            error_cb=self._nats_error,
            disconnected_cb=self._nats_disconnected,
            reconnected_cb=self._nats_reconnected,
        )
        self.js = self.nc.jetstream()
        # Stream checks go over a connection of their own: on the consumer's connection
        # their replies queue behind every message the server pushed ahead (seconds
        # during a bulk ingest on a busy machine).
        self._control = await nats.connect(
            **client_options(s.nats_url, "pulse-bi-materializer-control")
        )
        self.starting_step = "checking the stream"
        info = await ensure_stream(
            self.js,
            duplicate_window=s.stream_duplicate_window,
            max_age=s.stream_max_age_days * 86400,
            replicas=s.stream_replicas,
        )
        self.guard = await self._guard_stream(info)
        self.ingestor = self.new_ingestor()
        self.service = QueryService(
            self.nc,
            self.store,
            self.metrics,
            self.stats,
            s.query_workers,
            health=self.health,
            context=self.query_context,
            wait_for=self.wait_for_sequence,
            version=lambda: self._notice_version,
        )
        await self.service.start()
        self.read_gate = ReadGate(self.service, self._lag, s.read_max_lag)
        await self.read_gate.check()  # a replica replaying from far behind starts outside
        self._tasks.append(
            asyncio.create_task(self.read_gate.run(s.heartbeat_interval), name="read-gate")
        )
        self._tasks.append(asyncio.create_task(self._progress(), name="progress"))
        await self.ingestor.start()
        self.lifecycle = Lifecycle(self)
        await self.lifecycle.start(self.nc)
        self._tasks.append(asyncio.create_task(self._heartbeat(), name="heartbeat"))
        if s.http_port:
            self.http = HttpServer(self, s.http_host, s.http_port)
            await self.http.start()
        self.starting_step = "running"
        log.info(
            "materializer ready: %s, NATS %s, last sequence %d",
            s.duckdb_path,
            s.nats_url,
            self._notice_version,
        )

    def _open_store(self) -> Store:
        s = self.settings
        store = Store.open(
            s.duckdb_path,
            memory_limit=s.duckdb_memory_limit or None,
            threads=s.duckdb_threads or None,
            row_group_size=s.duckdb_row_group_size,
        )
        db.set_backstop_threshold(store.conn, s.checkpoint_threshold_bytes)
        return store

    async def _reopen_store(self) -> Store:
        """A fresh DuckDB instance on the same file, after DuckDB invalidated the last one."""
        old = self.store
        if old is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(old.close)
        store = await asyncio.to_thread(self._open_store)
        store.stream_last_sequence = old.stream_last_sequence if old is not None else None
        self.store = store
        if self.service is not None:
            self.service.use_store(store)
        log.warning(
            "DuckDB file %s open again at sequence %d",
            self.settings.duckdb_path,
            store.last_sequence(),
        )
        return store

    async def _guard_stream(self, info: Any) -> continuity.StreamGuard:
        """Compare the stream with the one the file was built from (kept at first use)."""
        assert self.store is not None and self.js is not None
        store = self.store
        applied = store.last_sequence()
        kept = store.read(continuity.load_identity)
        current = continuity.identity_of(info)
        # Kept at first use; an empty file has consumed nothing and takes the stream as is.
        adopt = kept is None or (applied == 0 and kept.created != current.created)
        path = self.settings.duckdb_path
        if adopt and continuity.replaced_reason(None, info, applied, path) is None:
            if kept is None and applied:
                log.info(
                    "file applied %d events before it kept the stream's identity: "
                    "stream %s (created %s) taken as its own",
                    applied,
                    current.stream,
                    current.created,
                )
            await asyncio.to_thread(continuity.save_identity, store.writer(), current)
            kept = current
        assert self._control is not None
        guard = continuity.StreamGuard(self._control.jetstream(), kept, self.settings.duckdb_path)
        guard.judge(info, applied)
        self._stream_last_sequence = guard.stream_last_sequence
        self._update_lag()
        return guard

    # -- state ---------------------------------------------------------------------

    def new_ingestor(self) -> Ingestor:
        """An ingestor for the current store (at start, and after a file swap)."""
        assert self.js is not None and self.store is not None and self.guard is not None
        return Ingestor(
            self.js,
            self.store,
            self.settings,
            self.metrics,
            self._announce,
            self.guard,
            self._reopen_store,
        )

    @property
    def control_connection(self) -> NATS | None:
        """The NATS connection for stream checks (not the consumer's)."""
        return self._control

    @property
    def last_sequence(self) -> int:
        """Last committed stream sequence."""
        return self._notice_version

    def stats(self) -> dict[str, Any]:
        """Pipeline figures for /stats and /health: the version announced, and the
        store's state as last committed (what the ``pipeline`` query shows)."""
        last = self._notice_version
        state = self._pipeline()
        return {
            "version": last,
            "last_sequence": last,
            "stream_last_sequence": self._stream_last_sequence,
            "lag": max(0, self._stream_last_sequence - last),
            "gap_count": state.gap_count,
            "events_missing": state.events_missing,
            "events_applied": state.events_applied,
            "events_rejected": state.events_rejected,
            "events_duplicate": state.events_duplicate,
            "batches": state.batches,
            "last_event_time": _iso(state.last_event_time),
            "last_batch_at": _iso(state.last_batch_at),
            "nats_connected": bool(self.nc and self.nc.is_connected),
            **(self.lifecycle.stats() if self.lifecycle is not None else {}),
            "reading": self.service is None or self.service.reading,
        }

    def _pipeline(self) -> pipeline.State:
        """The store's pipeline state as last committed (empty before it is open)."""
        return self.store.pipeline_state() if self.store is not None else pipeline.State()

    def _lag(self) -> int:
        return max(0, self._stream_last_sequence - self._notice_version)

    def health(self) -> tuple[str, str]:
        """``ok``, ``degraded`` (serving, but something needs attention) or
        ``unavailable`` (not doing its job), with the reason (docs/OPERATIONS.md, "Health")."""
        down: list[str] = []
        if self.nc is None or not self.nc.is_connected:
            down.append("not connected to NATS")
        if self.guard is not None and self.guard.replaced:
            down.append(self.guard.replaced)
        elif self.ingestor is None or not self.ingestor.started.is_set():
            down.append("ingest not started")
        elif self.ingestor.failed:
            down.append(f"ingest stopped: {self.ingestor.failed}")
        elif self.ingestor.fault:
            down.append(f"ingest retrying: {self.ingestor.fault}")
        if self.guard is not None and self.guard.problem and not down:
            down.append(self.guard.problem)
        if down:
            return "unavailable", "; ".join(down)
        warnings: list[str] = []
        state = self._pipeline()
        if state.gap_count:
            warnings.append(continuity.gaps_reason(state.gap_count, state.events_missing))
        low = self._low_disk()
        if low:
            warnings.append(low)
        if self.lifecycle is not None:
            warnings.extend(self.lifecycle.health_warnings())
        if warnings:
            return "degraded", "; ".join(warnings)
        return "ok", "ok"

    def healthy(self) -> tuple[bool, str]:
        """Whether the materializer is doing its job (``degraded`` is), and the reason."""
        status, reason = self.health()
        return status != "unavailable", reason

    def _low_disk(self) -> str | None:
        minimum = self.settings.disk_free_min_bytes
        path = self.settings.duckdb_path.parent
        try:
            free = shutil.disk_usage(path).free
        except OSError:
            return None
        self.metrics.disk_free_bytes.set(free)
        if not minimum or free >= minimum:
            return None
        return (
            f"low disk space: {free / 1e6:.0f} MB free at {path}, below DISK_FREE_MIN "
            f"{self.settings.disk_free_min} (checkpoints need headroom, docs/OPERATIONS.md "
            '"Disk space")'
        )

    def query_context(self) -> QueryContext:
        """Facts the named queries need that are not in DuckDB (stream position, health);
        health and the lifecycle figures are asked on the query's thread, by the query
        that shows them."""
        return QueryContext(
            stream_last_sequence=self._stream_last_sequence,
            health=self.health,
            lifecycle=self.lifecycle.stats if self.lifecycle is not None else dict,
        )

    async def wait_for_sequence(self, sequence: int, timeout: float = 30.0) -> None:
        """Wait until the batch holding ``sequence`` is committed (tests, tools)."""
        async with asyncio.timeout(timeout), self._sequence_changed:
            await self._sequence_changed.wait_for(lambda: self._notice_version >= sequence)

    # -- notices ---------------------------------------------------------------------

    async def _announce(self, result: BatchResult) -> None:
        previous = self._notice_version
        self._notice_version = max(previous, result.last_sequence)
        # A committed batch was confirmed to come from this stream: it reaches that far.
        self._stream_last_sequence = max(self._stream_last_sequence, result.last_sequence)
        self._update_lag()
        async with self._sequence_changed:
            self._sequence_changed.notify_all()
        notice = ChangeNotice(
            version=self._notice_version,
            aggregates=sorted(result.aggregates | {"pipeline"}),
            changes=result.changes,
            last_event_time=_iso(result.last_event_time),
            previous_version=previous,
        )
        await self._publish(notice)

    async def announce_pipeline(self) -> None:
        """A change notice for ``pipeline`` alone, at the same version: a backup, an
        archive run or a file swap changed what it shows without a new batch."""
        version = self._notice_version
        notice = ChangeNotice(version=version, aggregates=["pipeline"], previous_version=version)
        with contextlib.suppress(Exception):  # NATS away: the next batch refreshes it
            await self._publish(notice)

    async def _publish(self, notice: ChangeNotice) -> None:
        if self.nc is None or self.nc.is_closed:
            return
        # Core NATS, not JetStream: a missed notice is caught by the next heartbeat.
        # A batch of traced events: the notice carries the batch span's traceparent.
        await self.nc.publish(
            CHANGES_SUBJECT, notice_encoder.encode(notice), headers=current_headers()
        )

    async def _heartbeat(self) -> None:
        interval = self.settings.heartbeat_interval
        while True:
            await asyncio.sleep(interval)
            try:
                await self._refresh_stream_position()
                await self._publish(
                    ChangeNotice(
                        version=self._notice_version,
                        kind="heartbeat",
                        last_event_time=_iso(self._pipeline().last_event_time),
                    )
                )
            except Exception as exc:  # NATS away: keep beating once it returns
                log.debug("heartbeat skipped: %s", exc)

    async def _progress(self) -> None:
        """While behind the stream (a replay), log position, lag and rate every few seconds."""
        last = self._notice_version
        while True:
            await asyncio.sleep(PROGRESS_INTERVAL)
            with contextlib.suppress(Exception):  # NATS away: the heartbeat says so
                await self._refresh_stream_position()
            current = self._notice_version
            lag = self._stream_last_sequence - current
            if lag >= PROGRESS_MIN_LAG:
                log.info(
                    "catching up: sequence %d of %d, lag %d, %.0f events/s",
                    current,
                    self._stream_last_sequence,
                    lag,
                    (current - last) / PROGRESS_INTERVAL,
                )
            last = current

    async def _refresh_stream_position(self) -> None:
        """Ask the stream where it ends, and whether it is still the file's."""
        if self.guard is None or self._control is None or not self._control.is_connected:
            return
        if await self.guard.check(self._notice_version) is not None:
            # Exact, not clamped: a stream ending before the applied sequence was replaced.
            self._stream_last_sequence = self.guard.stream_last_sequence
            self._update_lag()
        self._low_disk()  # keeps the free-space gauge current

    def _update_lag(self) -> None:
        if self.store is not None:  # the pipeline query reports lag from it
            self.store.stream_last_sequence = self._stream_last_sequence
        self.metrics.stream_last_sequence.set(self._stream_last_sequence)
        self.metrics.lag.set(max(0, self._stream_last_sequence - self._notice_version))

    # -- lifecycle ---------------------------------------------------------------------

    async def run_until(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set or ingest fails (then raise why)."""
        stopper = asyncio.create_task(stop.wait())
        try:
            while True:
                ingestor = self.ingestor
                assert ingestor is not None
                ingest = asyncio.create_task(ingestor.wait())
                done, _ = await asyncio.wait({stopper, ingest}, return_when=asyncio.FIRST_COMPLETED)
                if ingest not in done:
                    ingest.cancel()
                    return
                swapping = self.lifecycle is not None and self.lifecycle.swapping
                if not swapping and self.ingestor is ingestor:
                    ingest.result()
                    return
                # Ingest stopped for a file swap (docs/OPERATIONS.md, "Rebuilding"): go
                # on with the ingestor of the new file.
                while self.lifecycle is not None and self.lifecycle.swapping:
                    await asyncio.sleep(0.05)
        finally:
            stopper.cancel()

    async def close(self) -> None:
        """Stop receiving, commit the last batch, close in reverse order."""
        started = time.perf_counter()
        if self.lifecycle is not None:
            await self.lifecycle.stop()
        if self.ingestor is not None:
            await self.ingestor.stop()
        await cancel_until_done(self._tasks)
        self._tasks.clear()
        if self.http is not None:
            await self.http.stop()
        if self.service is not None:
            await self.service.stop()
        for connection in (self.nc, self._control):
            if connection is not None and not connection.is_closed:
                with contextlib.suppress(Exception):
                    await connection.drain()
        if self.store is not None:
            await asyncio.to_thread(self.store.close)
            self.store = None
        log.info("materializer stopped in %.0f ms", (time.perf_counter() - started) * 1000)

    async def _nats_error(self, exc: Exception) -> None:
        log.warning("NATS: %s", exc)

    async def _nats_disconnected(self) -> None:
        if self.nc is not None and (self.nc.is_closed or self.nc.is_draining):
            return  # our own close, not an outage
        log.warning("disconnected from NATS; reconnecting")

    async def _nats_reconnected(self) -> None:
        log.info("reconnected to NATS")


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return str(value)
