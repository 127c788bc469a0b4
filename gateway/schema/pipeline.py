"""Pipeline: its GraphQL type orders and describes the fields for operators."""

from __future__ import annotations

import datetime as dt

import strawberry

from gateway.scalars import BigInt
from gateway.schema.base import Info, fetch
from gateway.schema.fields import resolver
from pulse_bi.contract.registry import PIPELINE, NoParams


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


@resolver(PIPELINE)
async def pipeline(info: Info) -> Pipeline:
    """The materializer's progress."""
    data = await fetch(info.context, PIPELINE, NoParams())
    return Pipeline(
        version=data.version,
        last_sequence=data.last_sequence,
        stream_last_sequence=data.stream_last_sequence,
        lag=data.lag,
        events_applied=data.events_applied,
        events_rejected=data.events_rejected,
        batches=data.batches,
        last_event_time=data.last_event_time,
        last_batch_at=data.last_batch_at,
        status=data.status,
        reason=data.reason,
        gap_count=data.gap_count,
        events_missing=data.events_missing,
        gaps=[
            StreamGap(
                from_sequence=gap.from_,
                to_sequence=gap.to,
                events=gap.events,
                detected_at=gap.detected_at,
            )
            for gap in data.gaps
        ],
    )
