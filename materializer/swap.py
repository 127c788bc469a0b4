"""Swapping a rebuilt file in place of the live one, between two batches
(``pulse-bi rebuild``, docs/OPERATIONS.md "Rebuilding").

The rebuild itself runs in another process (``materializer/rebuild.py``); this module
owns what the running materializer does when asked over NATS (``SWAP_SUBJECT``): check
the new file, stop ingest, catch the new file up from the stream, rename the files,
reopen and resume, or go on with the old file when anything fails.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
from nats.micro import Request

from materializer import archive, backup, continuity, faults, replay
from materializer.store import Store

if TYPE_CHECKING:
    from materializer.lifecycle import Lifecycle

log = logging.getLogger("pulse_bi.materializer.lifecycle")

#: Asks a materializer to take a rebuilt file in place of its own (``pulse-bi rebuild``).
SWAP_SUBJECT = "pulse.bi.materializer.swap"


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


_decode_swap = msgspec.json.Decoder(SwapRequest).decode


class Swapper:
    """Takes rebuilt files in place of one materializer's live file."""

    def __init__(self, lifecycle: Lifecycle) -> None:
        self.lifecycle = lifecycle
        self.settings = lifecycle.settings
        #: True while the live file is being swapped for a rebuilt one.
        self.swapping = False

    async def handle(self, request: Request) -> None:
        """The NATS endpoint: answer on a task of its own (a swap takes a while)."""
        self.lifecycle.answer_in_task(request, self.answer, "swap")

    async def answer(self, payload: bytes) -> SwapReply:
        """Swap as asked by ``payload`` (JSON ``SwapRequest``)."""
        try:
            asked = _decode_swap(payload)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return SwapReply(error=f"bad request: {exc}")
        try:
            return await self.swap(Path(asked.path))
        except Exception as exc:
            return SwapReply(error=faults.describe(exc))

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
        lifecycle = self.lifecycle
        if self.swapping or lifecycle.backup_lock.locked():
            raise backup.BackupError("a swap or a backup is under way; try again when it ends")
        async with lifecycle.archive_lock, lifecycle.backup_lock:
            return await self._swap(incoming, live)

    async def _swap(self, incoming: Path, live: Path) -> SwapReply:
        m = self.lifecycle.m
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
            self.lifecycle.archiving.use_store(store)
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
        js = self.lifecycle.jetstream()
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
        m = self.lifecycle.m
        try:
            old.read(lambda cur: cur.execute("SELECT 1").fetchall())
            store = old
        except Exception:
            store = await asyncio.to_thread(m._open_store)
            if m.service is not None:
                m.service.use_store(store)
            self.lifecycle.archiving.use_store(store)
        m.store = store
        m.ingestor = m.new_ingestor()
        await m.ingestor.start()
