"""Pipeline: how far the materializer is, and the events it rejected."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncGenerator

import strawberry

from gateway.limits import check_limit
from gateway.scalars import BigInt
from gateway.schema.base import (
    Context,
    Info,
    fetch,
    live,
    maybe_timestamp,
    timestamp,
)


@strawberry.type(description="An event the materializer stored as rejected, with its reason.")
class RejectedEvent:
    sequence: BigInt
    subject: str
    event_id: str | None
    event_type: str | None
    reason: str
    received_at: dt.datetime
    raw: str


@strawberry.type(
    description="Stream sequences that were deleted from the stream before the materializer "
    "applied them: their events are missing from every aggregate."
)
class StreamGap:
    from_sequence: BigInt
    to_sequence: BigInt
    events: BigInt
    detected_at: dt.datetime


@strawberry.type(description="Progress of the materializer through the event stream.")
class Pipeline:
    version: BigInt
    last_sequence: BigInt
    stream_last_sequence: BigInt
    lag: BigInt
    events_applied: BigInt
    events_rejected: BigInt
    batches: BigInt
    last_event_time: dt.datetime | None
    last_batch_at: dt.datetime | None
    status: str = strawberry.field(
        description="The answering materializer's health: ok, degraded or unavailable."
    )
    reason: str = strawberry.field(description="Why the status is what it is ('ok' when ok).")
    gap_count: BigInt = strawberry.field(description="Gaps recorded since the file was built.")
    events_missing: BigInt = strawberry.field(description="Events lost in all recorded gaps.")
    gaps: list[StreamGap] = strawberry.field(description="The latest 100 gaps, newest first.")
    last_backup_at: dt.datetime | None = strawberry.field(
        default=None, description="When the newest backup was taken (none: null)."
    )
    last_backup_sequence: BigInt | None = strawberry.field(
        default=None, description="Last stream sequence the newest backup holds."
    )
    archive_horizon: BigInt = strawberry.field(
        default=0,
        description="Raw events up to this sequence are in the Parquet archive only.",
    )
    file_bytes: BigInt | None = strawberry.field(
        default=None, description="Size of the DuckDB file and its WAL."
    )
    disk_free_bytes: BigInt | None = strawberry.field(
        default=None, description="Free space on the DuckDB file's volume."
    )


async def pipeline(context: Context) -> Pipeline:
    """The materializer's progress."""
    data = await fetch(context, "pipeline", {})
    return Pipeline(
        version=data.get("version", data["last_sequence"]),
        last_sequence=data["last_sequence"],
        stream_last_sequence=data["stream_last_sequence"],
        lag=data["lag"],
        events_applied=data["events_applied"],
        events_rejected=data["events_rejected"],
        batches=data["batches"],
        last_event_time=maybe_timestamp(data.get("last_event_time")),
        last_batch_at=maybe_timestamp(data.get("last_batch_at")),
        # A materializer older than these fields does not report them.
        status=data.get("status", "unknown"),
        reason=data.get("reason", "the materializer does not report its health"),
        gap_count=data.get("gap_count", 0),
        events_missing=data.get("events_missing", 0),
        gaps=[
            StreamGap(
                from_sequence=gap["from"],
                to_sequence=gap["to"],
                events=gap["events"],
                detected_at=timestamp(gap["detected_at"]),
            )
            for gap in data.get("gaps", [])
        ],
        last_backup_at=maybe_timestamp(data.get("last_backup_at")),
        last_backup_sequence=data.get("last_backup_sequence"),
        archive_horizon=data.get("archive_horizon", 0),
        file_bytes=data.get("file_bytes"),
        disk_free_bytes=data.get("disk_free_bytes"),
    )


async def rejected_events(context: Context, limit: int | None) -> list[RejectedEvent]:
    """Latest rejected events, newest first."""
    rows = await fetch(context, "rejected_events", {"limit": check_limit(limit, 50)})
    return [
        RejectedEvent(
            sequence=row["sequence"],
            subject=row["subject"],
            event_id=row.get("event_id"),
            event_type=row.get("event_type"),
            reason=row["reason"],
            received_at=timestamp(row["received_at"]),
            raw=row["raw"],
        )
        for row in rows
    ]


@strawberry.type
class PipelineQuery:
    """Pipeline fields of Query."""

    @strawberry.field(description="Last applied sequence, counters, last event time and lag.")
    async def pipeline(self, info: Info) -> Pipeline:
        return await pipeline(info.context)

    @strawberry.field(description="Events stored as rejected, newest first, with reasons.")
    async def rejected_events(self, info: Info, limit: int | None = 50) -> list[RejectedEvent]:
        return await rejected_events(info.context, limit)


@strawberry.type
class PipelineSubscription:
    """Live pipeline fields of Subscription."""

    @strawberry.subscription(description="Live `pipeline`.")
    async def pipeline(self, info: Info) -> AsyncGenerator[Pipeline, None]:
        async for _ in live(info.context, "pipeline"):
            yield await pipeline(info.context)

    @strawberry.subscription(description="Live `rejectedEvents`.")
    async def rejected_events(
        self, info: Info, limit: int | None = 50
    ) -> AsyncGenerator[list[RejectedEvent], None]:
        async for _ in live(info.context, "rejected_events"):
            yield await rejected_events(info.context, limit)
