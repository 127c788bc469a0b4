"""Data lifecycle inside the running materializer: what starts and stops it, and what
it reports (docs/OPERATIONS.md, "Backup", "Archive and retention", "Rebuilding").

``Lifecycle`` owns the NATS service of the lifecycle endpoints, the schedules' tasks
and the locks they share; the work is done by ``materializer/backup_service.py``
(backups), ``materializer/archiving.py`` (archive runs, retention, compaction, the
stream's ``max_age``) and ``materializer/swap.py`` (a rebuilt file swapped in).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.micro import Request, ServiceConfig, add_service
from nats.micro.service import EndpointConfig, Service

from materializer import archive, backup, db
from materializer.archiving import Archiving
from materializer.backup_service import BACKUP_SUBJECT, Backups
from materializer.swap import SWAP_SUBJECT, Swapper
from pulse_bi import __version__
from pulse_bi.contract import QUERY_QUEUE_GROUP
from pulse_bi.tasks import cancel_until_done

if TYPE_CHECKING:
    from datetime import datetime

    from materializer.app import Materializer

log = logging.getLogger("pulse_bi.materializer.lifecycle")

_encode = msgspec.json.Encoder().encode


class Lifecycle:
    """Backups, archive, retention, swaps and the stream's ``max_age`` for one materializer."""

    def __init__(self, materializer: Materializer) -> None:
        self.m = materializer
        self.settings = materializer.settings
        #: Held while a backup is written (a swap waits for it).
        self.backup_lock = asyncio.Lock()
        #: Held while an archive run or a swap changes the file.
        self.archive_lock = asyncio.Lock()
        self.backups = Backups(self)
        self.archiving = Archiving(self)
        self.swapper = Swapper(self)
        self._service: Service | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._answering: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()

    # -- start and stop ------------------------------------------------------------

    async def start(self, nc: NATS) -> None:
        """Register the backup and swap endpoints and start the schedules."""
        await self.archiving.start()
        await self.backups.start()
        self._service = await add_service(
            nc,
            ServiceConfig(
                name="pulse-bi-lifecycle",
                version=__version__,
                description="Pulse BI backups of the materializer's DuckDB file",
                queue_group=QUERY_QUEUE_GROUP,
            ),
        )
        endpoints = (
            ("backup", BACKUP_SUBJECT, self.backups.handle, QUERY_QUEUE_GROUP),
            ("swap", f"{SWAP_SUBJECT}.{self._service.id}", self.swapper.handle, None),
            ("swap-any", SWAP_SUBJECT, self.swapper.handle, QUERY_QUEUE_GROUP),
        )
        for name, subject, handler, group in endpoints:
            await self._service.add_endpoint(
                EndpointConfig(name=name, subject=subject, handler=handler, queue_group=group)
            )
        self._spawn(self.archiving.watch_retention(), "retention")
        if self.settings.backup_interval:
            self._spawn(self.backups.schedule(), "backups")
        if self.settings.archive_after_days:
            self._spawn(self.archiving.schedule(), "archive")

    def _spawn(self, work: Awaitable[None], name: str) -> None:
        self._tasks.append(asyncio.create_task(work, name=name))  # type: ignore[arg-type]

    async def pause(self, seconds: float) -> bool:
        """Sleep between two runs of a schedule; False when stopping (cut short)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
        return not self._stopping.is_set()

    async def stop(self) -> None:
        """Stop the schedules and the endpoints; a backup being written is finished."""
        self._stopping.set()
        if self._service is not None:
            await self._service.stop()
        if self._answering:
            await asyncio.wait(set(self._answering), timeout=60)
        # Cancelled again until done: nats-py may turn a cancellation that reaches it
        # in a fetch into a time-out, and the schedule would then sleep on.
        await cancel_until_done(self._tasks)
        self._tasks.clear()

    def answer_in_task(
        self,
        request: Request,
        answer: Callable[[bytes], Awaitable[msgspec.Struct]],
        what: str,
    ) -> None:
        """Answer ``request`` with ``answer(request.data)`` on a task of its own (``stop``
        waits for it), so that a long backup or swap does not hold the endpoint."""
        task = asyncio.create_task(self._respond(request, answer, what))
        self._answering.add(task)
        task.add_done_callback(self._answering.discard)

    @staticmethod
    async def _respond(
        request: Request, answer: Callable[[bytes], Awaitable[msgspec.Struct]], what: str
    ) -> None:
        try:
            await request.respond(_encode(await answer(request.data)))
        except Exception:  # the requester went away: it times out
            log.warning("could not answer a %s request", what, exc_info=True)

    def jetstream(self) -> JetStreamContext:
        """JetStream on the control connection (reads of the stream, its info)."""
        control = self.m.control_connection
        if control is None or not control.is_connected:
            raise archive.ArchiveError("not connected to NATS: the archive reads the stream")
        return control.jetstream()

    # -- what tests, tools and the gateway's end-to-end tests call --------------------

    async def take_backup(self, root: Path) -> backup.Backup:
        """A consistent snapshot of the live file into a new directory in ``root``."""
        return await self.backups.take(root)

    async def archive_once(self, now: datetime | None = None) -> int:
        """One archive run now (see ``Archiving.archive_once``)."""
        return await self.archiving.archive_once(now)

    @property
    def swapping(self) -> bool:
        """True while the live file is being swapped for a rebuilt one."""
        return self.swapper.swapping

    # -- reporting ---------------------------------------------------------------------

    def health_warnings(self) -> list[str]:
        """``degraded`` reasons: retention ahead of the archive, failed backups/archive."""
        warnings = []
        if self.archiving.retention_problem:
            warnings.append(self.archiving.retention_problem)
        if self.archiving.error:
            warnings.append(f"archive failing: {self.archiving.error}")
        if self.backups.last_backup_error and self.settings.backup_interval:
            warnings.append(f"last scheduled backup failed: {self.backups.last_backup_error}")
        return warnings

    def stats(self) -> dict[str, Any]:
        """Backup, archive and disk figures for /stats, /health and ``pipeline``."""
        path = self.settings.duckdb_path
        size = 0
        for part in (path, db.wal_path(path)):
            with contextlib.suppress(OSError):
                size += part.stat().st_size
        try:
            free: int | None = shutil.disk_usage(path.parent).free
        except OSError:
            free = None
        last = self.backups.last_backup
        archiving = self.archiving
        metrics = self.m.metrics
        metrics.archive_horizon.set(archiving.horizon)
        metrics.archive_bytes.set(archiving.archive_bytes)
        metrics.file_bytes.set(size)
        return {
            "last_backup_at": last.manifest.created_at if last else None,
            "last_backup_sequence": last.manifest.last_sequence if last else None,
            "last_backup_path": str(last.path) if last else None,
            "last_backup_error": self.backups.last_backup_error,
            "archive_horizon": archiving.horizon,
            "archived_at": archiving.archived_at.isoformat() if archiving.archived_at else None,
            "archive_error": archiving.error,
            "archive_bytes": archiving.archive_bytes,
            "file_bytes": size,
            "disk_free_bytes": free,
            "stream_max_age_seconds": archiving.stream_max_age,
        }
