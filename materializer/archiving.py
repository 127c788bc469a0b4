"""The archive schedule of the running materializer, and the stream's retention
watched against it (docs/OPERATIONS.md, "Archive and retention").

Every ``ARCHIVE_INTERVAL`` the messages older than ``ARCHIVE_AFTER_DAYS`` that the file
has applied are read back from the stream and written as an archive run
(``materializer/archive.py``: Parquet written off the writer thread), their raw rows
retired on the ingest writer thread between two batches, and the file compacted. This
module owns the archive horizon, the last archive error, and the check that the
stream's ``max_age`` never deletes what is not archived yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from nats.js.errors import NotFoundError

from materializer import archive, faults, replay
from materializer.settings import RETENTION_MARGIN_DAYS
from materializer.store import Store
from pulse_bi.contract import STREAM_NAME

if TYPE_CHECKING:
    from materializer.lifecycle import Lifecycle

log = logging.getLogger("pulse_bi.materializer.lifecycle")

#: Messages per archive run (one set of Parquet files, one retention transaction).
ARCHIVE_RUN = 200_000
#: /health warns this long before the stream's ``max_age`` would delete an event that
#: is not applied and archived yet.
WARN_BEFORE = timedelta(hours=12)
#: Seconds between two checks of the stream's retention against the archive.
RETENTION_CHECK_INTERVAL = 60.0


class Archiving:
    """Archive runs, retention of raw rows, compaction and the stream's ``max_age``."""

    def __init__(self, lifecycle: Lifecycle) -> None:
        self.lifecycle = lifecycle
        self.settings = lifecycle.settings
        self.horizon = 0
        self.archived_at: datetime | None = None
        self.error: str | None = None
        #: Why the stream's retention endangers events (None: it does not).
        self.retention_problem: str | None = None
        self.stream_max_age = 0.0
        self.compactions = 0
        self.archive_bytes = 0

    async def start(self) -> None:
        """Read the horizon and the archive's size; give the store its archive reader."""
        store = self.lifecycle.m.store
        assert store is not None
        self.use_store(store)
        self.archive_bytes = await asyncio.to_thread(archive.size_bytes, self.settings.archive_path)

    def use_store(self, store: Store) -> None:
        """Read raw events older than ``store``'s horizon back from the archive."""
        self.horizon = store.read(archive.horizon)
        if self.horizon or self.settings.archive_after_days:
            store.archive = archive.ArchiveReader(self.settings.archive_path, self.horizon)

    async def schedule(self) -> None:
        """An archive run every ``ARCHIVE_INTERVAL`` (a minute after a failed one)."""
        pause = self.lifecycle.pause
        while True:
            try:
                await self.archive_once()
                self.error = None
            except Exception as exc:
                self.error = faults.describe(exc)
                log.warning("archive run failed: %s; next try in %.0f s", self.error, 60)
                if not await pause(min(60.0, self.settings.archive_interval)):
                    return
                continue
            if not await pause(self.settings.archive_interval):
                return

    async def archive_once(self, now: datetime | None = None) -> int:
        """Archive what is older than ARCHIVE_AFTER_DAYS and applied, retire it from the
        raw tables, compact; return how many stream messages were archived."""
        async with self.lifecycle.archive_lock:
            return await self._archive(now or datetime.now(UTC))

    async def _archive(self, now: datetime) -> int:
        m = self.lifecycle.m
        store, ingestor = m.store, m.ingestor
        if store is None or ingestor is None:
            raise archive.ArchiveError("ingest is not running")
        root = self.settings.archive_path
        root.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(archive.remove_unfinished, root)
        horizon = store.read(archive.horizon)
        # A run finished before a crash, not retired yet: retire it, do not write it again.
        for run in archive.runs(root):
            if run.last > horizon:
                await self.retire(run.last)
                horizon = run.last
        cutoff = now - timedelta(days=self.settings.archive_after_days)
        js = self.lifecycle.jetstream()
        first, _ = await replay.stream_last_sequence(js)
        if first > horizon + 1:
            missing = store.read(lambda cur: archive.raw_rows_between(cur, horizon + 1, first - 1))
            if missing:
                raise archive.ArchiveError(
                    f"the stream no longer holds sequences {horizon + 1}-{first - 1}, which are "
                    "not archived yet: their raw rows stay in DuckDB (stream retention outran "
                    'the archive, docs/OPERATIONS.md "Archive and retention")'
                )
        archived = 0
        while True:
            applied = store.last_sequence()
            taken: list[Any] = []
            reached_cutoff = False
            # Closed when left early: its consumer is deleted at once, not at GC.
            async with contextlib.aclosing(
                replay.stream_messages(js, horizon + 1, applied)
            ) as chunks:
                async for chunk in chunks:
                    for message in chunk:
                        if message.received_at > cutoff:
                            reached_cutoff = True
                            break
                        taken.append(message)
                    if reached_cutoff or len(taken) >= ARCHIVE_RUN:
                        break
            if not taken:
                break
            # The typed rows of these messages are read from the live file on a cursor of
            # their own: retirement has not deleted them yet.
            run, written = await asyncio.to_thread(
                store.read, functools.partial(archive.write_run, root, taken)
            )
            await self.retire(run.last)
            horizon = run.last
            archived += len(taken)
            log.info(
                "archived sequences %d-%d (%d messages, %d bytes of Parquet)",
                run.first,
                run.last,
                len(taken),
                written,
            )
            if reached_cutoff or len(taken) < ARCHIVE_RUN:
                break
        if archived:
            await m.announce_pipeline()
            await self.compact()
            self.archive_bytes = await asyncio.to_thread(archive.size_bytes, root)
        return archived

    async def retire(self, upto: int) -> None:
        """Delete the raw rows up to ``upto`` and move the horizon, between two batches."""
        m = self.lifecycle.m
        store, ingestor = m.store, m.ingestor
        assert store is not None and ingestor is not None
        if store.archive is None:
            store.archive = archive.ArchiveReader(self.settings.archive_path, 0)
        reader = store.archive

        def retire() -> int:
            deleted = archive.retire(store.writer(), upto)
            # On the writer thread too: the next batch may cancel an order whose raw row
            # just left, and must find it in the archive.
            reader.horizon = upto
            return deleted

        deleted = await ingestor.between_batches(retire)
        self.horizon = upto
        self.archived_at = datetime.now(UTC)
        log.info("raw rows up to sequence %d left DuckDB (%d rows)", upto, deleted)

    async def compact(self) -> None:
        """Checkpoint after retention: DuckDB frees the deleted rows' blocks and reuses
        them, so the file stops growing (docs/OPERATIONS.md, "Archive and retention")."""
        m = self.lifecycle.m
        store, ingestor = m.store, m.ingestor
        if store is None or ingestor is None:
            return
        started = time.perf_counter()
        await ingestor.between_batches(lambda: store.checkpoint(force=True))
        self.compactions += 1
        log.info("compacted %s in %.1f s", self.settings.duckdb_path, time.perf_counter() - started)

    # -- the stream's retention --------------------------------------------------------

    async def watch_retention(self) -> None:
        """Every ``RETENTION_CHECK_INTERVAL``: ``check_retention``, announced on change."""
        while True:
            with contextlib.suppress(Exception):  # NATS away: the health says so already
                problem = await self.check_retention()
                if problem != self.retention_problem:
                    self.retention_problem = problem
                    await self.lifecycle.m.announce_pipeline()  # status and reason changed
            if not await self.lifecycle.pause(RETENTION_CHECK_INTERVAL):
                return

    async def check_retention(self, now: datetime | None = None) -> str | None:
        """Why the stream's ``max_age`` endangers events, before it deletes any."""
        now = now or datetime.now(UTC)
        js = self.lifecycle.jetstream()
        try:
            info = await js.stream_info(STREAM_NAME)
        except NotFoundError:
            return None
        max_age = float(info.config.max_age or 0)
        self.stream_max_age = max_age
        wanted = self.settings.stream_max_age_days * 86400
        problems = []
        if max_age and wanted and abs(max_age - wanted) > 1:
            problems.append(
                f"stream {STREAM_NAME} has max_age {max_age / 86400:g} days, "
                f"STREAM_MAX_AGE_DAYS says {wanted / 86400:g}: edit one of them"
            )
        if not max_age:
            return "; ".join(problems) or None
        keep = self.settings.archive_after_days + RETENTION_MARGIN_DAYS
        if not self.settings.archive_after_days or max_age < keep * 86400:
            problems.append(
                f"stream {STREAM_NAME} deletes events after {max_age / 86400:g} days, before "
                f"the archive takes them (ARCHIVE_AFTER_DAYS + {RETENTION_MARGIN_DAYS:g} = "
                f"{keep:g}): raise the stream's max_age or lower ARCHIVE_AFTER_DAYS"
            )
        store = self.lifecycle.m.store
        if store is not None:
            # The oldest event the stream must still keep: not archived, or not applied.
            needed = min(self.horizon, store.last_sequence()) + 1
            first = int(info.state.first_seq or 0)
            last = int(info.state.last_seq or 0)
            if first <= needed <= last:
                with contextlib.suppress(Exception):
                    message = await js.get_msg(STREAM_NAME, needed)
                    stored = message.time if hasattr(message, "time") else None
                    if isinstance(stored, datetime):
                        deleted_at = stored + timedelta(seconds=max_age)
                        if deleted_at - now <= WARN_BEFORE:
                            hours = max(0.0, (deleted_at - now).total_seconds() / 3600)
                            problems.append(
                                f"the stream's max_age deletes sequence {needed} in {hours:.1f} h "
                                "and it is not archived yet (archive behind: "
                                f"{self.error or 'not run yet'})"
                            )
        return "; ".join(problems) or None
