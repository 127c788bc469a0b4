"""Data lifecycle inside the running materializer: backups on request and on a schedule,
archive runs with retention and compaction, and the stream's ``max_age`` watched
(docs/OPERATIONS.md, "Backup", "Archive and retention").

The materializer owns the DuckDB file, so ``pulse-bi backup`` asks it over NATS
(``BACKUP_SUBJECT``, in the query queue group): NATS authenticates the request where
the server has auth configured. Retention deletes run on the ingest writer thread
between two batches; Parquet files are written off it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from nats.micro import Request, ServiceConfig, add_service
from nats.micro.service import EndpointConfig, Service

from materializer import archive, backup, continuity, faults, replay
from materializer.settings import RETENTION_MARGIN_DAYS
from materializer.store import Store
from pulse_bi import __version__
from pulse_bi.contract import QUERY_QUEUE_GROUP, STREAM_NAME

if TYPE_CHECKING:
    from materializer.app import Materializer

log = logging.getLogger("pulse_bi.materializer.lifecycle")

BACKUP_SUBJECT = "pulse.bi.materializer.backup"
#: Asks a materializer to take a rebuilt file in place of its own (``pulse-bi rebuild``).
SWAP_SUBJECT = "pulse.bi.materializer.swap"
#: Longest ``dest`` accepted in a backup request (bytes of its UTF-8).
MAX_DEST = 4096
#: Messages per archive run (one set of Parquet files, one retention transaction).
ARCHIVE_RUN = 200_000
#: /health warns this long before the stream's ``max_age`` would delete an event that
#: is not applied and archived yet.
WARN_BEFORE = timedelta(hours=12)
#: Seconds between two checks of the stream's retention against the archive.
RETENTION_CHECK_INTERVAL = 60.0

_encode = msgspec.json.Encoder().encode


class BackupRequest(msgspec.Struct, forbid_unknown_fields=True):
    """What ``pulse-bi backup`` sends: where the backup goes (default BACKUP_PATH)."""

    dest: str | None = None


class BackupReply(msgspec.Struct, omit_defaults=True):
    """The backup's directory and manifest, or why there is none."""

    path: str | None = None
    manifest: backup.Manifest | None = None
    error: str | None = None


class SwapRequest(msgspec.Struct, forbid_unknown_fields=True):
    """What ``pulse-bi rebuild`` sends: the rebuilt file to take in place of the live one."""

    path: str


class SwapReply(msgspec.Struct, omit_defaults=True):
    """The swap done (the old file's new name, how long ingest paused), or why not."""

    swapped: str | None = None
    previous_file: str | None = None
    last_sequence: int | None = None
    caught_up: int = 0
    pause_seconds: float | None = None
    error: str | None = None


_decode_request = msgspec.json.Decoder(BackupRequest).decode
_decode_swap = msgspec.json.Decoder(SwapRequest).decode


def bad_dest(dest: str) -> str | None:
    """Why ``dest`` cannot be a backup directory, or None."""
    if not dest.strip():
        return "dest is empty"
    if len(dest.encode("utf-8", "surrogatepass")) > MAX_DEST:
        return f"dest is longer than {MAX_DEST} bytes"
    if "\x00" in dest:
        return "dest contains a NUL character"
    path = Path(dest)
    try:
        if path.exists() and not path.is_dir():
            return f"{dest} exists and is not a directory"
    except (OSError, ValueError) as exc:  # a name too long for the file system
        return f"dest cannot be used: {exc}"
    return None


class Lifecycle:
    """Backups, archive, retention and the stream's ``max_age`` for one materializer."""

    def __init__(self, materializer: Materializer) -> None:
        self.m = materializer
        self.settings = materializer.settings
        self._service: Service | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._backup_lock = asyncio.Lock()
        self._archive_lock = asyncio.Lock()
        self._answering: set[asyncio.Task[None]] = set()
        self.last_backup: backup.Backup | None = None
        self.last_backup_error: str | None = None
        self.archive_horizon = 0
        self.archived_at: datetime | None = None
        self.archive_error: str | None = None
        #: Why the stream's retention endangers events (None: it does not).
        self.retention_problem: str | None = None
        self.stream_max_age = 0.0
        self.compactions = 0
        self.archive_bytes = 0
        #: True while the live file is being swapped for a rebuilt one.
        self.swapping = False
        self._stopping = asyncio.Event()

    # -- start and stop ------------------------------------------------------------

    async def start(self, nc: NATS) -> None:
        """Register the backup endpoint and start the schedules."""
        store = self.m.store
        assert store is not None
        self.archive_horizon = store.read(archive.horizon)
        found = await asyncio.to_thread(backup.last_backup, self.settings.backup_path)
        if found is not None:
            # Reported, not verified: checksumming a large backup would delay start-up.
            with contextlib.suppress(backup.BackupError):
                self.last_backup = backup.Backup(found[1], backup.read_manifest(found[1]))
        self._install_reader()
        self._gauge_backup()
        self.archive_bytes = await asyncio.to_thread(archive.size_bytes, self.settings.archive_path)
        self._service = await add_service(
            nc,
            ServiceConfig(
                name="pulse-bi-lifecycle",
                version=__version__,
                description="Pulse BI backups of the materializer's DuckDB file",
                queue_group=QUERY_QUEUE_GROUP,
            ),
        )
        await self._service.add_endpoint(
            EndpointConfig(
                name="backup",
                subject=BACKUP_SUBJECT,
                handler=self._backup_handler,
                queue_group=QUERY_QUEUE_GROUP,
            )
        )
        await self._service.add_endpoint(
            EndpointConfig(
                name="swap",
                subject=f"{SWAP_SUBJECT}.{self._service.id}",
                handler=self._swap_handler,
            )
        )
        await self._service.add_endpoint(
            EndpointConfig(
                name="swap-any",
                subject=SWAP_SUBJECT,
                handler=self._swap_handler,
                queue_group=QUERY_QUEUE_GROUP,
            )
        )
        self._tasks.append(asyncio.create_task(self._watch_retention(), name="retention"))
        if self.settings.backup_interval:
            self._tasks.append(asyncio.create_task(self._backup_schedule(), name="backups"))
        if self.settings.archive_after_days:
            self._tasks.append(asyncio.create_task(self._archive_schedule(), name="archive"))

    def _gauge_backup(self) -> None:
        last = self.last_backup
        if last is not None:
            when = datetime.fromisoformat(last.manifest.created_at)
            self.m.metrics.last_backup_time.set(when.timestamp())
            self.m.metrics.last_backup_sequence.set(last.manifest.last_sequence)

    def _install_reader(self) -> None:
        store = self.m.store
        if store is None:
            return
        if self.archive_horizon or self.settings.archive_after_days:
            store.archive = archive.ArchiveReader(self.settings.archive_path, self.archive_horizon)

    async def _pause(self, seconds: float) -> bool:
        """Sleep between two runs of a schedule; False when stopping (cut short)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
        return not self._stopping.is_set()

    async def stop(self) -> None:
        """Stop the schedules and the endpoint; a backup being written is finished."""
        self._stopping.set()
        if self._service is not None:
            await self._service.stop()
        if self._answering:
            await asyncio.wait(set(self._answering), timeout=60)
        for task in self._tasks:
            # Cancelled again until done: nats-py may turn a cancellation that reaches
            # it in a fetch into a time-out, and the schedule would then sleep on.
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=1.0)
        self._tasks.clear()

    # -- backups ---------------------------------------------------------------------

    async def _backup_handler(self, request: Request) -> None:
        task = asyncio.create_task(self._answer_backup(request))
        self._answering.add(task)
        task.add_done_callback(self._answering.discard)

    async def _answer_backup(self, request: Request) -> None:
        try:
            reply = await self.answer_backup(request.data)
            await request.respond(_encode(reply))
        except Exception:  # the requester went away: it times out
            log.warning("could not answer a backup request", exc_info=True)

    async def answer_backup(self, payload: bytes) -> BackupReply:
        """Take a backup as asked by ``payload`` (JSON ``BackupRequest``)."""
        try:
            asked = _decode_request(payload) if payload.strip() else BackupRequest()
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return BackupReply(error=f"bad request: {exc}")
        root = self.settings.backup_path
        if asked.dest is not None:
            problem = bad_dest(asked.dest)
            if problem is not None:
                return BackupReply(error=f"bad request: {problem}")
            root = Path(asked.dest)
        try:
            taken = await self.take_backup(root)
        except Exception as exc:
            return BackupReply(error=faults.describe(exc))
        return BackupReply(path=str(taken.path), manifest=taken.manifest)

    async def take_backup(self, root: Path) -> backup.Backup:
        """A consistent snapshot of the live file into a new directory in ``root``."""
        store = self.m.store
        if store is None:
            raise backup.BackupError("the DuckDB file is not open")
        if self._backup_lock.locked():
            raise backup.BackupError("a backup is being written already; try again when it ends")
        async with self._backup_lock:
            started = time.perf_counter()
            try:
                taken = await asyncio.to_thread(
                    backup.snapshot_online, store.conn, root, __version__
                )
            except Exception as exc:
                self.last_backup_error = faults.describe(exc)
                log.error("backup to %s failed: %s", root, self.last_backup_error)
                raise
            self.last_backup, self.last_backup_error = taken, None
            self._gauge_backup()
            await self.m.announce_pipeline()
            log.info(
                "backup %s: sequence %d, %d bytes in %.1f s",
                taken.path,
                taken.manifest.last_sequence,
                taken.manifest.size_bytes,
                time.perf_counter() - started,
            )
            return taken

    async def _backup_schedule(self) -> None:
        interval = self.settings.backup_interval
        while True:
            found = backup.last_backup(self.settings.backup_path)
            due = interval if found is None else interval - backup.age(found[0]).total_seconds()
            if not await self._pause(max(0.0, due) if found is not None else min(interval, 5.0)):
                return
            with contextlib.suppress(Exception):  # recorded in last_backup_error
                await self.take_backup(self.settings.backup_path)
                removed = await asyncio.to_thread(
                    backup.prune,
                    self.settings.backup_path,
                    self.settings.backup_keep_daily,
                    self.settings.backup_keep_weekly,
                )
                for path in removed:
                    log.info("old backup %s removed (BACKUP_KEEP_DAILY/WEEKLY)", path)
            if self.last_backup_error and not await self._pause(min(interval, 300.0)):
                return

    # -- swapping in a rebuilt file -----------------------------------------------------

    async def _swap_handler(self, request: Request) -> None:
        task = asyncio.create_task(self._answer_swap(request))
        self._answering.add(task)
        task.add_done_callback(self._answering.discard)

    async def _answer_swap(self, request: Request) -> None:
        try:
            try:
                asked = _decode_swap(request.data)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                reply = SwapReply(error=f"bad request: {exc}")
            else:
                try:
                    reply = await self.swap(Path(asked.path))
                except Exception as exc:
                    reply = SwapReply(error=faults.describe(exc))
            await request.respond(_encode(reply))
        except Exception:
            log.warning("could not answer a swap request", exc_info=True)

    async def swap(self, incoming: Path) -> SwapReply:
        """Take the rebuilt file ``incoming`` in place of the live one, between two batches.

        Ingest stops (its last batch commits), the rebuilt file catches up from the stream
        to the live file's sequence, both are checkpointed and closed, the live file is
        moved aside to ``.replaced-<time>`` and the rebuilt one renamed in, opened, and
        ingest resumes: the version never goes back. Reads are answered by the old file
        until the new one is open.
        """
        if str(incoming).strip() == "" or "\x00" in str(incoming):
            raise backup.BackupError("path is empty or holds a NUL character")
        incoming = incoming.absolute()
        live = self.settings.duckdb_path.absolute()
        if incoming == live or not incoming.is_file():
            raise backup.BackupError(f"{incoming} is not a rebuilt DuckDB file beside the live one")
        if self.swapping or self._backup_lock.locked():
            raise backup.BackupError("a swap or a backup is under way; try again when it ends")
        async with self._archive_lock, self._backup_lock:
            return await self._swap(incoming, live)

    async def _swap(self, incoming: Path, live: Path) -> SwapReply:
        m = self.m
        old, ingestor = m.store, m.ingestor
        if old is None or ingestor is None:
            raise backup.BackupError("ingest is not running")
        candidate = await asyncio.to_thread(Store.open, incoming)
        try:
            kept = candidate.read(continuity.load_identity)
            ours = old.read(continuity.load_identity)
            if kept is not None and ours is not None and kept.created != ours.created:
                raise backup.BackupError(
                    f"{incoming} was built from another stream (created {kept.created}, "
                    f"the live file's {ours.created})"
                )
            if candidate.last_sequence() > old.last_sequence():
                raise backup.BackupError(f"{incoming} is ahead of the live file")
        except BaseException:
            await asyncio.to_thread(candidate.close)
            raise
        self.swapping = True
        paused = time.perf_counter()
        try:
            await ingestor.stop()
            target = old.last_sequence()
            try:
                caught_up = await self._catch_up(candidate, target)
                await asyncio.to_thread(candidate.checkpoint, force=True)
            finally:
                await asyncio.to_thread(candidate.close)
            await asyncio.to_thread(old.checkpoint, force=True)
            await asyncio.to_thread(old.close)
            aside = backup.swap_in(incoming, live, "replaced")
            store = await asyncio.to_thread(m._open_store)
            store.stream_last_sequence = old.stream_last_sequence
            m.store = store
            if m.service is not None:
                m.service.use_store(store)
            self.archive_horizon = store.read(archive.horizon)
            self._install_reader()
            m.ingestor = m.new_ingestor()
            await m.ingestor.start()
        except BaseException:
            await self._resume_after_failed_swap(old)
            raise
        finally:
            self.swapping = False
        await m.announce_pipeline()
        pause = time.perf_counter() - paused
        log.warning(
            "rebuilt file swapped in at sequence %d (%d caught up, ingest paused %.2f s); "
            "the old file is %s",
            target,
            caught_up,
            pause,
            aside,
        )
        return SwapReply(
            swapped=str(live),
            previous_file=str(aside) if aside else None,
            last_sequence=target,
            caught_up=caught_up,
            pause_seconds=round(pause, 3),
        )

    async def _catch_up(self, candidate: Store, target: int) -> int:
        candidate.archive = archive.ArchiveReader(
            self.settings.archive_path, candidate.read(archive.horizon)
        )
        applied = 0
        js = self._jetstream()
        async for chunk in replay.stream_messages(js, candidate.last_sequence() + 1, target):
            await asyncio.to_thread(candidate.apply_batch, chunk)
            applied += len(chunk)
        if candidate.last_sequence() < target:
            raise archive.ArchiveError(
                f"the rebuilt file reaches sequence {candidate.last_sequence()}, the stream "
                f"no longer holds what is between it and {target}"
            )
        return applied

    async def _resume_after_failed_swap(self, old: Store) -> None:
        """Go on with the live file as it was (opened again when it was closed)."""
        m = self.m
        try:
            old.read(lambda cur: cur.execute("SELECT 1").fetchall())
            store = old
        except Exception:
            store = await asyncio.to_thread(m._open_store)
            if m.service is not None:
                m.service.use_store(store)
        m.store = store
        m.ingestor = m.new_ingestor()
        await m.ingestor.start()

    # -- archive and retention ---------------------------------------------------------

    def _jetstream(self) -> JetStreamContext:
        control = self.m.control_connection
        if control is None or not control.is_connected:
            raise archive.ArchiveError("not connected to NATS: the archive reads the stream")
        return control.jetstream()

    async def _archive_schedule(self) -> None:
        while True:
            try:
                await self.archive_once()
                self.archive_error = None
            except Exception as exc:
                self.archive_error = faults.describe(exc)
                log.warning("archive run failed: %s; next try in %.0f s", self.archive_error, 60)
                if not await self._pause(min(60.0, self.settings.archive_interval)):
                    return
                continue
            if not await self._pause(self.settings.archive_interval):
                return

    async def archive_once(self, now: datetime | None = None) -> int:
        """Archive what is older than ARCHIVE_AFTER_DAYS and applied, retire it from the
        raw tables, compact; return how many stream messages were archived."""
        async with self._archive_lock:
            return await self._archive(now or datetime.now(UTC))

    async def _archive(self, now: datetime) -> int:
        store, ingestor = self.m.store, self.m.ingestor
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
        js = self._jetstream()
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
            run, written = await asyncio.to_thread(archive.write_run, root, taken)
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
            await self.m.announce_pipeline()
            await self.compact()
            self.archive_bytes = await asyncio.to_thread(archive.size_bytes, root)
        return archived

    async def retire(self, upto: int) -> None:
        store, ingestor = self.m.store, self.m.ingestor
        assert store is not None and ingestor is not None
        deleted = await ingestor.between_batches(lambda: archive.retire(store.conn, upto))
        self.archive_horizon = upto
        self.archived_at = datetime.now(UTC)
        if store.archive is None:
            store.archive = archive.ArchiveReader(self.settings.archive_path, upto)
        store.archive.horizon = upto
        log.info("raw rows up to sequence %d left DuckDB (%d rows)", upto, deleted)

    async def compact(self) -> None:
        """Checkpoint after retention: DuckDB frees the deleted rows' blocks and reuses
        them, so the file stops growing (docs/OPERATIONS.md, "Archive and retention")."""
        store, ingestor = self.m.store, self.m.ingestor
        if store is None or ingestor is None:
            return
        started = time.perf_counter()
        await ingestor.between_batches(lambda: store.checkpoint(force=True))
        self.compactions += 1
        log.info("compacted %s in %.1f s", self.settings.duckdb_path, time.perf_counter() - started)

    # -- the stream's retention --------------------------------------------------------

    async def _watch_retention(self) -> None:
        while True:
            with contextlib.suppress(Exception):  # NATS away: the health says so already
                problem = await self.check_retention()
                if problem != self.retention_problem:
                    self.retention_problem = problem
                    await self.m.announce_pipeline()  # status and reason changed
            if not await self._pause(RETENTION_CHECK_INTERVAL):
                return

    async def check_retention(self, now: datetime | None = None) -> str | None:
        """Why the stream's ``max_age`` endangers events, before it deletes any."""
        now = now or datetime.now(UTC)
        js = self._jetstream()
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
        store = self.m.store
        if store is not None:
            # The oldest event the stream must still keep: not archived, or not applied.
            needed = min(self.archive_horizon, store.last_sequence()) + 1
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
                                f"{self.archive_error or 'not run yet'})"
                            )
        return "; ".join(problems) or None

    # -- reporting ---------------------------------------------------------------------

    def health_warnings(self) -> list[str]:
        """``degraded`` reasons: retention ahead of the archive, failed backups/archive."""
        warnings = []
        if self.retention_problem:
            warnings.append(self.retention_problem)
        if self.archive_error:
            warnings.append(f"archive failing: {self.archive_error}")
        if self.last_backup_error and self.settings.backup_interval:
            warnings.append(f"last scheduled backup failed: {self.last_backup_error}")
        return warnings

    def stats(self) -> dict[str, Any]:
        """Backup, archive and disk figures for /stats, /health and ``pipeline``."""
        s = self.settings
        path = s.duckdb_path
        size = 0
        for part in (path, Path(f"{path}.wal")):
            with contextlib.suppress(OSError):
                size += part.stat().st_size
        try:
            free: int | None = shutil.disk_usage(path.parent).free
        except OSError:
            free = None
        last = self.last_backup
        metrics = self.m.metrics
        metrics.archive_horizon.set(self.archive_horizon)
        metrics.archive_bytes.set(self.archive_bytes)
        metrics.file_bytes.set(size)
        return {
            "last_backup_at": last.manifest.created_at if last else None,
            "last_backup_sequence": last.manifest.last_sequence if last else None,
            "last_backup_path": str(last.path) if last else None,
            "last_backup_error": self.last_backup_error,
            "archive_horizon": self.archive_horizon,
            "archived_at": self.archived_at.isoformat() if self.archived_at else None,
            "archive_error": self.archive_error,
            "archive_bytes": self.archive_bytes,
            "file_bytes": size,
            "disk_free_bytes": free,
            "stream_max_age_seconds": self.stream_max_age,
        }
