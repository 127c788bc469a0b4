"""Lost and replaced stream data over real NATS and DuckDB: recorded, counted, loud.

Gaps: a purge, deleted messages and a ``max_msgs`` cut while the materializer is not
reading; each must be recorded (from, to, detected at), shown by ``pipeline`` and
/health (``degraded``), counted on /metrics, while the events around it are applied.
Replaced stream: deleted and created again, new events published: nothing of the new
stream is applied to the old file, health and ``pipeline`` say so and name the fix.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import duckdb
import httpx
import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from materializer import continuity
from materializer.app import Materializer
from materializer.consumer import Ingestor
from materializer.metrics import MaterializerMetrics
from materializer.settings import Settings
from materializer.store import BatchResult, Store
from pulse_bi.contract import STREAM_NAME
from pulse_bi.natsserver import free_port
from pulse_bi.streams import ensure_stream
from tests.conftest import publish_events
from tests.materializer.test_runtime import ask, order

HOUR = {"from": "2026-11-25T10:00:00Z", "to": "2026-11-25T11:00:00Z"}


def orders(first: int, count: int) -> list[dict[str, Any]]:
    """``count`` orders of 1.00 each in the same hour, ids from ``first``."""
    return [
        order(f"O-{i}", "1.00", time="2026-11-25T10:00:00Z") for i in range(first, first + count)
    ]


async def until(condition: Callable[[], Awaitable[bool] | bool], timeout: float = 20) -> None:
    """Poll ``condition`` until it holds (fail after ``timeout`` seconds)."""
    async with asyncio.timeout(timeout):
        while True:
            result = condition()
            if not isinstance(result, bool):
                result = await result
            if result:
                return
            await asyncio.sleep(0.05)


def metric(text: str, name: str) -> float:
    """The value of an unlabelled sample in Prometheus text."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


async def test_a_purge_while_stopped_is_recorded_shown_and_degrades_health(
    materializer_settings: Settings, js: JetStreamContext, nc: NATS
) -> None:
    settings = dataclasses.replace(materializer_settings, http_port=free_port())
    async with Materializer(settings) as first:
        await first.wait_for_sequence(await publish_events(js, *orders(0, 5)))  # 1-5
    last = await publish_events(js, *orders(5, 10))  # 6-15 while nothing reads
    await js.purge_stream(STREAM_NAME, seq=11)  # 6-10 gone before they were applied

    async with Materializer(settings) as second:
        await second.wait_for_sequence(last)
        pipeline = await ask(nc, "pipeline")
        rows = await ask(nc, "sales_by_hour", **HOUR)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.http_port}") as http:
            health = await http.get("/health")
            metrics = (await http.get("/metrics")).text

    assert rows[0]["orders"] == 10  # 1-5 and 11-15: everything still in the stream
    assert pipeline["events_missing"] == 5 and pipeline["gap_count"] == 1
    [gap] = pipeline["gaps"]
    assert (gap["from"], gap["to"], gap["events"]) == (6, 10, 5)
    assert gap["detected_at"].endswith("+00:00")
    assert pipeline["status"] == "degraded"
    assert pipeline["last_sequence"] == last and pipeline["lag"] == 0
    assert health.status_code == 200  # degraded still serves (docs/OPERATIONS.md, Health)
    body = health.json()
    assert body["status"] == "degraded"
    assert "5 events missing from the stream in 1 gap" in body["reason"]
    assert body["events_missing"] == 5
    assert metric(metrics, "pulse_materializer_stream_gaps_total") == 1
    assert metric(metrics, "pulse_materializer_events_missing_total") == 5


async def test_deleted_messages_are_recorded_as_separate_gaps_that_survive_a_restart(
    materializer_settings: Settings, js: JetStreamContext, nc: NATS
) -> None:
    last = await publish_events(js, *orders(0, 20))
    for sequence in (4, 5, 6, 12):  # a range and a single message
        await js.delete_msg(STREAM_NAME, sequence)

    async with Materializer(materializer_settings) as running:
        await running.wait_for_sequence(last)
        assert running.health()[0] == "degraded"
    async with Materializer(materializer_settings) as again:  # the gaps are in the file
        status, reason = again.health()
        pipeline = await ask(nc, "pipeline")
        rows = await ask(nc, "sales_by_hour", **HOUR)

    assert status == "degraded" and "4 events missing" in reason and "2 gaps" in reason
    assert [(g["from"], g["to"]) for g in pipeline["gaps"]] == [(12, 12), (4, 6)]
    assert pipeline["events_missing"] == 4
    assert rows[0]["orders"] == 16
    assert pipeline["events_applied"] == 16


async def test_a_max_msgs_cut_while_behind_is_recorded(
    materializer_settings: Settings, js: JetStreamContext, nc: NATS
) -> None:
    async with Materializer(materializer_settings) as first:
        await first.wait_for_sequence(await publish_events(js, *orders(0, 3)))  # 1-3
    last = await publish_events(js, *orders(3, 17))  # 4-20
    info = await js.stream_info(STREAM_NAME)
    await js.update_stream(dataclasses.replace(info.config, max_msgs=5))  # keeps 16-20

    async with Materializer(materializer_settings) as second:
        await second.wait_for_sequence(last)
        pipeline = await ask(nc, "pipeline")

    assert [(g["from"], g["to"]) for g in pipeline["gaps"]] == [(4, 15)]
    assert pipeline["events_missing"] == 12
    assert pipeline["events_applied"] == 8


def test_gaps_are_found_between_the_last_applied_and_the_batch() -> None:
    find = continuity.find_gaps
    assert find(0, []) == []
    assert find(5, [6, 7, 8]) == []
    assert find(0, [3]) == [continuity.Gap(1, 2)]
    assert find(5, [9, 10, 14]) == [continuity.Gap(6, 8), continuity.Gap(11, 13)]
    assert continuity.Gap(6, 8).events == 3


async def recreate(js: JetStreamContext) -> None:
    await js.delete_stream(STREAM_NAME)
    await ensure_stream(js)


async def test_a_recreated_stream_is_never_applied_to_the_old_file(
    materializer_settings: Settings, js: JetStreamContext, nc: NATS
) -> None:
    async with Materializer(materializer_settings) as running:
        old_last = await publish_events(js, *orders(0, 5))
        await running.wait_for_sequence(old_last)
        await recreate(js)
        # More events than the old stream had: sequences 6-40 would look like more of it.
        new_last = await publish_events(js, *orders(100, 40))
        await until(lambda: running.health()[0] == "unavailable")
        await asyncio.sleep(1)  # heartbeats and the consumer had time to do harm
        _, reason = running.health()
        pipeline = await ask(nc, "pipeline")
        rows = await ask(nc, "sales_by_hour", **HOUR)
        async with asyncio.timeout(10):  # stops promptly while halted
            await running.close()

    assert new_last == 40
    assert "deleted and created again" in reason and "rebuild" in reason
    assert str(materializer_settings.duckdb_path) in reason
    assert pipeline["status"] == "unavailable" and "Rebuilding" in pipeline["reason"]
    assert pipeline["last_sequence"] == old_last == 5
    assert rows[0]["orders"] == 5
    conn = duckdb.connect(str(materializer_settings.duckdb_path), read_only=True)
    try:
        assert conn.execute("SELECT count(*) FROM order_events").fetchone() == (5,)
    finally:
        conn.close()


async def test_a_stream_recreated_while_stopped_is_refused_at_start(
    materializer_settings: Settings, js: JetStreamContext, nc: NATS
) -> None:
    async with Materializer(materializer_settings) as first:
        await first.wait_for_sequence(await publish_events(js, *orders(0, 8)))
    await recreate(js)
    await publish_events(js, *orders(200, 3))  # ends before the 8 the file applied

    async with Materializer(materializer_settings) as second:
        await asyncio.sleep(1.5)  # a few heartbeats
        status, reason = second.health()
        pipeline = await ask(nc, "pipeline")

    assert status == "unavailable" and "deleted and created again" in reason
    assert pipeline["last_sequence"] == 8 and pipeline["events_applied"] == 8
    assert pipeline["stream_last_sequence"] == 3  # not clamped to the applied 8


async def test_a_stream_ending_before_the_applied_sequence_is_refused_without_identity(
    materializer_settings: Settings, js: JetStreamContext, nc: NATS
) -> None:
    """A file that applied events before it kept an identity (older code) is still safe."""
    async with Materializer(materializer_settings) as first:
        await first.wait_for_sequence(await publish_events(js, *orders(0, 6)))
    conn = duckdb.connect(str(materializer_settings.duckdb_path))
    try:
        conn.execute("DELETE FROM stream_identity")
    finally:
        conn.close()
    await recreate(js)
    await publish_events(js, *orders(300, 2))

    async with Materializer(materializer_settings) as second:
        status, reason = second.health()

    assert status == "unavailable"
    assert "ends at sequence 2, before the 6 this file applied" in reason


async def test_an_empty_file_takes_a_recreated_stream_as_its_own(
    materializer_settings: Settings, js: JetStreamContext, nc: NATS
) -> None:
    async with Materializer(materializer_settings):
        pass  # kept the identity of a stream it never read from
    await recreate(js)
    last = await publish_events(js, *orders(0, 4))
    async with Materializer(materializer_settings) as running:
        await running.wait_for_sequence(last)
        assert running.health() == ("ok", "ok")


async def test_a_deleted_stream_makes_health_unavailable(
    materializer_settings: Settings, js: JetStreamContext, nc: NATS
) -> None:
    async with Materializer(materializer_settings) as running:
        await running.wait_for_sequence(await publish_events(js, *orders(0, 2)))
        await js.delete_stream(STREAM_NAME)
        await until(lambda: running.health()[0] == "unavailable")
        assert "not found" in running.health()[1]


class CountingGuard(continuity.StreamGuard):
    """A stream guard that counts the questions it asks JetStream."""

    asked = 0

    async def check(self, applied: int) -> bool | None:
        self.asked += 1
        return await super().check(applied)


@asynccontextmanager
async def ingesting(
    settings: Settings, js: JetStreamContext
) -> AsyncIterator[tuple[Ingestor, CountingGuard, list[BatchResult]]]:
    """An ingestor alone on its own connection, without the materializer's heartbeats
    (which check the stream too): what it applies is its own stream checks' doing."""
    store = Store.open(settings.duckdb_path)
    identity = continuity.identity_of(await js.stream_info(STREAM_NAME))
    continuity.save_identity(store.conn, identity)
    guard = CountingGuard(js, identity, settings.duckdb_path)
    consumer = await nats.connect(settings.nats_url)
    batches: list[BatchResult] = []

    async def on_batch(result: BatchResult) -> None:
        batches.append(result)

    async def reopen() -> Store:
        raise AssertionError("the store is never broken here")

    ingestor = Ingestor(
        consumer.jetstream(), store, settings, MaterializerMetrics(), on_batch, guard, reopen
    )
    try:
        await ingestor.start()
        yield ingestor, guard, batches
    finally:
        await ingestor.stop()
        await consumer.close()
        store.close()


async def test_the_stream_is_confirmed_once_per_subscription_not_per_batch(
    materializer_settings: Settings, js: JetStreamContext
) -> None:
    async with ingesting(materializer_settings, js) as (ingestor, guard, batches):
        for i in range(4):  # one batch each
            last = await publish_events(js, *orders(i, 1))
            await until(lambda: ingestor.last_sequence == last)  # noqa: B023
        asked_first = guard.asked
        ingestor._read_again()  # a resubscription (as after back-pressure or a gap)
        # Its consumer exists before its first batch: that batch asks once, the next none.
        await until(lambda: ingestor._created == 2)
        for i in range(4, 7):
            last = await publish_events(js, *orders(i, 1))
            await until(lambda: ingestor.last_sequence == last)  # noqa: B023

    assert len(batches) == 7
    assert asked_first == 1
    assert guard.asked == 2


async def test_a_consumer_created_on_a_recreated_stream_is_never_applied(
    materializer_settings: Settings, js: JetStreamContext
) -> None:
    """The consumer of the old stream is gone with it; the one created again (here at
    once, as after two silent heartbeat intervals) delivers the new stream's sequences
    1-40, past the 5 applied: its first batch is checked, and ingest stops."""
    async with ingesting(materializer_settings, js) as (ingestor, guard, batches):
        old_last = await publish_events(js, *orders(0, 5))
        await until(lambda: ingestor.last_sequence == old_last)
        await recreate(js)
        await publish_events(js, *orders(100, 40))
        ingestor._read_again()
        await until(lambda: guard.replaced is not None)
        await asyncio.sleep(0.5)  # time to do harm
        applied = ingestor.last_sequence

    assert old_last == 5 and applied == 5
    assert sum(batch.applied for batch in batches) == 5
    assert guard.replaced is not None and "deleted and created again" in guard.replaced
    conn = duckdb.connect(str(materializer_settings.duckdb_path), read_only=True)
    try:
        assert conn.execute("SELECT count(*) FROM order_events").fetchone() == (5,)
    finally:
        conn.close()
