"""Backups taken by the running materializer: ``pulse-bi backup`` asks over NATS
(``BACKUP_SUBJECT``), and ``BACKUP_INTERVAL`` takes them on a schedule with retention
(docs/OPERATIONS.md, "Backup").

The materializer owns the DuckDB file, so it writes the snapshot (``materializer/backup.py``)
on a cursor of its own while ingest goes on; NATS authenticates the request where the
server has auth configured. This module owns the request and reply structs, the
last backup and its error, and the schedule.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
from nats.micro import Request

from materializer import backup, faults
from pulse_bi import __version__

if TYPE_CHECKING:
    from materializer.lifecycle import Lifecycle

log = logging.getLogger("pulse_bi.materializer.lifecycle")

BACKUP_SUBJECT = "pulse.bi.materializer.backup"
#: Longest ``dest`` accepted in a backup request (bytes of its UTF-8).
MAX_DEST = 4096


class BackupRequest(msgspec.Struct, forbid_unknown_fields=True):
    """What ``pulse-bi backup`` sends: where the backup goes (default BACKUP_PATH)."""

    dest: str | None = None


class BackupReply(msgspec.Struct, omit_defaults=True):
    """The backup's directory and manifest, or why there is none."""

    path: str | None = None
    manifest: backup.Manifest | None = None
    error: str | None = None


_decode_request = msgspec.json.Decoder(BackupRequest).decode


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


class Backups:
    """Online backups of one materializer's file: on request and on a schedule."""

    def __init__(self, lifecycle: Lifecycle) -> None:
        self.lifecycle = lifecycle
        self.settings = lifecycle.settings
        self.last_backup: backup.Backup | None = None
        self.last_backup_error: str | None = None

    async def start(self) -> None:
        """Find the newest backup already in ``BACKUP_PATH`` (reported, not verified:
        checksumming a large backup would delay start-up)."""
        found = await asyncio.to_thread(backup.last_backup, self.settings.backup_path)
        if found is not None:
            with contextlib.suppress(backup.BackupError):
                self.last_backup = backup.Backup(found[1], backup.read_manifest(found[1]))
        self._gauge()

    def _gauge(self) -> None:
        last = self.last_backup
        if last is not None:
            metrics = self.lifecycle.m.metrics
            metrics.last_backup_time.set(
                datetime.fromisoformat(last.manifest.created_at).timestamp()
            )
            metrics.last_backup_sequence.set(last.manifest.last_sequence)

    async def handle(self, request: Request) -> None:
        """The NATS endpoint: answer on a task of its own (a backup takes a while)."""
        self.lifecycle.answer_in_task(request, self.answer, "backup")

    async def answer(self, payload: bytes) -> BackupReply:
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
            taken = await self.take(root)
        except Exception as exc:
            return BackupReply(error=faults.describe(exc))
        return BackupReply(path=str(taken.path), manifest=taken.manifest)

    async def take(self, root: Path) -> backup.Backup:
        """A consistent snapshot of the live file into a new directory in ``root``."""
        lock = self.lifecycle.backup_lock
        store = self.lifecycle.m.store
        if store is None:
            raise backup.BackupError("the DuckDB file is not open")
        if lock.locked():
            raise backup.BackupError("a backup is being written already; try again when it ends")
        async with lock:
            started = time.perf_counter()
            try:
                snapshot = functools.partial(backup.snapshot_online, root=root, version=__version__)
                taken = await asyncio.to_thread(store.read, snapshot)
            except Exception as exc:
                self.last_backup_error = faults.describe(exc)
                log.error("backup to %s failed: %s", root, self.last_backup_error)
                raise
            self.last_backup, self.last_backup_error = taken, None
            self._gauge()
            await self.lifecycle.m.announce_pipeline()
            log.info(
                "backup %s: sequence %d, %d bytes in %.1f s",
                taken.path,
                taken.manifest.last_sequence,
                taken.manifest.size_bytes,
                time.perf_counter() - started,
            )
            return taken

    async def schedule(self) -> None:
        """Every ``BACKUP_INTERVAL``: a backup, then the old ones pruned
        (``BACKUP_KEEP_DAILY``/``BACKUP_KEEP_WEEKLY``)."""
        interval = self.settings.backup_interval
        pause = self.lifecycle.pause
        while True:
            found = backup.last_backup(self.settings.backup_path)
            due = interval if found is None else interval - backup.age(found[0]).total_seconds()
            if not await pause(max(0.0, due) if found is not None else min(interval, 5.0)):
                return
            with contextlib.suppress(Exception):  # recorded in last_backup_error
                await self.take(self.settings.backup_path)
                removed = await asyncio.to_thread(
                    backup.prune,
                    self.settings.backup_path,
                    self.settings.backup_keep_daily,
                    self.settings.backup_keep_weekly,
                )
                for path in removed:
                    log.info("old backup %s removed (BACKUP_KEEP_DAILY/WEEKLY)", path)
            if self.last_backup_error and not await pause(min(interval, 300.0)):
                return
