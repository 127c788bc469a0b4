"""Lost and replaced stream data: recorded, counted and reported, never silently skipped.

Two ways the stream can stop being what the DuckDB file was built from
(docs/OPERATIONS.md, "Lost and replaced stream data"):

- **A gap**: sequences the consumer read past because they were no longer in the stream
  (a purge, a deleted range, a ``max_msgs`` cut while the materializer was behind). The
  consumer re-reads a gap once (it may be a message lost on the way); a gap still there
  is real. The store records it (from, to, detected at) in ``stream_gaps`` in the same
  transaction as the batch that follows it: a gap in the buffer handed to the store
  is always a confirmed one. The events are lost for good, so the file stays
  ``degraded``; ingest goes on.
- **A replaced stream**: the stream was deleted and created again. Its sequences start
  over, so applying them would mix two histories. The stream's creation time is kept
  in ``stream_identity`` when the file first consumes it; a different creation time,
  or a last sequence below the last applied one, stops ingest for good (unhealthy)
  until the file is rebuilt. ``StreamGuard`` checks it on every heartbeat and, after
  each (re)subscription, before the first batch holding that consumer's messages is
  applied: a consumer delivers only the stream it was created on, and the batch's
  messages were received before the check, so none of them can be from a stream
  created after it (``consumer.Ingestor._confirm``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
from nats.js import JetStreamContext
from nats.js.api import StreamInfo
from nats.js.errors import NotFoundError

from pulse_bi.contract import STREAM_NAME, UtcTime
from pulse_bi.contract.registry import GapRow

log = logging.getLogger("pulse_bi.materializer.continuity")

#: Most gaps listed by the ``pipeline`` query (newest first); the totals count them all.
GAPS_LISTED = 100


@dataclass(frozen=True, slots=True)
class Gap:
    """Stream sequences ``first``..``last`` (inclusive) that were gone when read past."""

    first: int
    last: int

    @property
    def events(self) -> int:
        """How many sequences (events) the gap holds."""
        return self.last - self.first + 1


def find_gaps(previous: int, sequences: Sequence[int]) -> list[Gap]:
    """Ranges missing between ``previous`` (last applied) and the increasing ``sequences``."""
    if not sequences or sequences[-1] - previous == len(sequences):
        return []  # contiguous: the common case costs nothing per message
    gaps = []
    expected = previous + 1
    for sequence in sequences:
        if sequence > expected:
            gaps.append(Gap(expected, sequence - 1))
        expected = sequence + 1
    return gaps


def record_gaps(
    cur: duckdb.DuckDBPyConnection, previous: int, sequences: Sequence[int]
) -> list[Gap]:
    """Store the batch's gaps in its own transaction; return them."""
    gaps = find_gaps(previous, sequences)
    if gaps:
        now = datetime.now(UTC)
        cur.executemany(
            "INSERT INTO stream_gaps VALUES (?, ?, ?)", [[g.first, g.last, now] for g in gaps]
        )
    return gaps


#: How many gaps the file recorded, and how many events they hold (one row).
GAP_TOTALS = (
    "SELECT count(*) AS gap_count,"
    " coalesce(sum(to_sequence - from_sequence + 1), 0) AS events_missing FROM stream_gaps"
)


def recent_gaps(cur: duckdb.DuckDBPyConnection, limit: int = GAPS_LISTED) -> list[GapRow]:
    """The latest gaps, newest first, as the ``pipeline`` query lists them."""
    rows = cur.execute(
        "SELECT from_sequence, to_sequence, detected_at FROM stream_gaps"
        " ORDER BY from_sequence DESC LIMIT ?",
        [limit],
    ).fetchall()
    return [
        GapRow(
            from_=int(first),
            to=int(last),
            events=int(last) - int(first) + 1,
            detected_at=UtcTime.of(detected),
        )
        for first, last, detected in rows
    ]


def gaps_reason(count: int, missing: int) -> str:
    """The ``degraded`` reason of a file with gaps."""
    plural = "s" if count != 1 else ""
    return (
        f"{missing} events missing from the stream in {count} gap{plural} (see pipeline.gaps): "
        "they were deleted from the stream before they were applied"
    )


@dataclass(frozen=True, slots=True)
class StreamIdentity:
    """The stream a DuckDB file was built from."""

    stream: str
    created: str  # the stream's creation time as JetStream reports it (ISO-8601)
    first_sequence: int


def identity_of(info: StreamInfo) -> StreamIdentity:
    """The identity of the stream ``info`` describes."""
    created = info.created.astimezone(UTC).isoformat() if info.created else ""
    return StreamIdentity(info.config.name or STREAM_NAME, created, int(info.state.first_seq))


def load_identity(cur: duckdb.DuckDBPyConnection) -> StreamIdentity | None:
    """The identity stored in the file, if it consumed a stream already."""
    row = cur.execute(
        "SELECT stream, created, first_sequence FROM stream_identity WHERE id = 1"
    ).fetchone()
    return None if row is None else StreamIdentity(row[0], row[1], int(row[2]))


def save_identity(conn: duckdb.DuckDBPyConnection, identity: StreamIdentity) -> None:
    """Store (or replace) the identity of the stream the file is built from."""
    conn.execute(
        "INSERT OR REPLACE INTO stream_identity VALUES (1, ?, ?, ?, ?)",
        [identity.stream, identity.created, identity.first_sequence, datetime.now(UTC)],
    )


def replaced_reason(
    kept: StreamIdentity | None, info: StreamInfo, applied: int, path: Path | str
) -> str | None:
    """Why the stream is not the one the file was built from, or None when it is."""
    fix = (
        f"rebuild: stop the materializer, move {path} away and start it again "
        '(docs/OPERATIONS.md, "Rebuilding")'
    )
    current = identity_of(info)
    if kept is not None and kept.created and current.created != kept.created:
        return (
            f"stream {current.stream} was deleted and created again (created {current.created}; "
            f"this file was built from the stream created {kept.created}): ingest stopped; {fix}"
        )
    last = int(info.state.last_seq)
    if last < applied:
        return (
            f"stream {current.stream} ends at sequence {last}, before the {applied} this file "
            f"applied: it is not the stream the file was built from; ingest stopped; {fix}"
        )
    return None


class StreamGuard:
    """Asks JetStream whether the stream is still the file's, after subscribing and on beats."""

    def __init__(self, js: JetStreamContext, identity: StreamIdentity | None, path: Path) -> None:
        self._js = js
        self._identity = identity
        self._path = path
        #: Why ingest stopped for good (a replaced stream); None while the stream is the file's.
        self.replaced: str | None = None
        #: Why the stream cannot be checked right now (not found, JetStream away).
        self.problem: str | None = None
        #: The stream's last sequence at the last check (not clamped to anything).
        self.stream_last_sequence = 0

    async def check(self, applied: int) -> bool | None:
        """True: the stream is the file's. False: it was replaced (see ``replaced``).
        None: cannot tell now (see ``problem``); ask again later."""
        if self.replaced is not None:
            return False
        try:
            info = await self._js.stream_info(STREAM_NAME)
        except NotFoundError:
            self.problem = (
                f"stream {STREAM_NAME} not found (deleted?); not applying until it is back"
            )
            return None
        except Exception as exc:
            self.problem = (
                f"cannot ask JetStream about stream {STREAM_NAME}: {exc or type(exc).__name__}"
            )
            return None
        return self.judge(info, applied)

    def judge(self, info: StreamInfo, applied: int) -> bool:
        """Compare ``info`` with the file's stream (also used with the info read at start)."""
        self.problem = None
        self.stream_last_sequence = int(info.state.last_seq)
        reason = replaced_reason(self._identity, info, applied, self._path)
        if reason is not None:
            if self.replaced is None:
                log.error("%s", reason)
            self.replaced = reason
            return False
        return True
