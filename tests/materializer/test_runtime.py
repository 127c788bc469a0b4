"""The materializer process over real NATS: ingest, change notices, named queries, HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import msgspec
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from materializer.app import Materializer
from materializer.settings import Settings
from pulse_bi.contract import (
    CHANGES_SUBJECT,
    ChangeNotice,
    notice_decoder,
    query_subject,
    reply_decoder,
)
from pulse_bi.natsserver import free_port
from tests.conftest import cloud_event, publish_events


async def ask(nc: NATS, name: str, **params: Any) -> Any:
    """Send one named query; return its data (fail the test on an error reply)."""
    msg = await nc.request(query_subject(name), json.dumps(params).encode(), timeout=10)
    reply = reply_decoder.decode(msg.data)
    assert reply.error is None, reply.error
    return reply.data


@contextlib.contextmanager
def answering_through(
    materializer: Materializer, wrap: Callable[[Callable[..., Any]], Callable[..., Any]]
) -> Iterator[None]:
    """Inside the block the store answers named queries through ``wrap(its query)``."""
    store = materializer.store
    assert store is not None
    query = store.query
    store.query = wrap(query)  # type: ignore[method-assign]
    try:
        yield
    finally:
        store.query = query  # type: ignore[method-assign]


def burn_cpu(seconds: float) -> None:
    """Keep this thread on the CPU for ``seconds`` of its own CPU time."""
    started = time.thread_time()
    while time.thread_time() - started < seconds:
        pass


def order(order_id: str, total: str, *, time: str, channel: str = "web", **extra: Any) -> dict:
    return cloud_event(
        "order.created",
        {
            "order_id": order_id,
            "customer_id": "C-1",
            "channel": channel,
            "total_amount": total,
            "lines": [{"sku": "SKU-1", "quantity": 2, "unit_price": "5.00"}],
        },
        time=time,
        **extra,
    )


async def test_published_orders_show_in_the_sales_by_hour_query(
    materializer: Materializer, js: JetStreamContext, nc: NATS
) -> None:
    last = await publish_events(
        js,
        order("O-1", "10.00", time="2026-11-25T10:04:05Z"),
        order("O-2", "20.50", time="2026-11-25T10:59:59+00:00", channel="store"),
        order("O-3", "7.25", time="2026-11-25T12:00:00+01:00"),  # 11:00 UTC
    )
    await materializer.wait_for_sequence(last)

    rows = await ask(
        nc, "sales_by_hour", **{"from": "2026-11-25T00:00:00Z", "to": "2026-11-26T00:00:00Z"}
    )

    assert [(r["hour"][:13], r["orders"], r["gross_revenue"]) for r in rows] == [
        ("2026-11-25T10", 2, "30.50"),
        ("2026-11-25T11", 1, "7.25"),
    ]


async def test_change_notice_names_the_new_version_and_the_changed_keys(
    materializer: Materializer, js: JetStreamContext, nc: NATS
) -> None:
    notices: asyncio.Queue[ChangeNotice] = asyncio.Queue()

    async def collect(msg: Any) -> None:
        notice = notice_decoder.decode(msg.data)
        if notice.kind == "change":
            await notices.put(notice)

    await nc.subscribe(CHANGES_SUBJECT, cb=collect)
    await nc.flush()
    move = cloud_event(
        "stock.moved",
        {"sku": "SKU-9", "warehouse": "WH-A", "quantity_delta": 5, "reason": "receipt"},
    )
    last = await publish_events(js, move)

    notice = await asyncio.wait_for(notices.get(), 10)

    assert notice.version == last
    assert "stock" in notice.aggregates and "pipeline" in notice.aggregates
    assert notice.changes.skus == ["SKU-9"]
    assert notice.changes.warehouses == ["WH-A"]
    assert notice.previous_version == 0


async def test_heartbeat_carries_the_current_version(
    materializer: Materializer, js: JetStreamContext, nc: NATS
) -> None:
    last = await publish_events(js, order("O-1", "1.00", time="2026-11-25T10:00:00Z"))
    await materializer.wait_for_sequence(last)
    sub = await nc.subscribe(CHANGES_SUBJECT)
    async with asyncio.timeout(10):
        while True:
            notice = notice_decoder.decode((await sub.next_msg(timeout=5)).data)
            if notice.kind == "heartbeat":
                break
    assert notice.version == last


async def test_a_query_reply_carries_the_version_it_was_read_at(
    materializer: Materializer, js: JetStreamContext, nc: NATS
) -> None:
    first = await publish_events(js, order("O-1", "1.00", time="2026-11-25T10:00:00Z"))
    await materializer.wait_for_sequence(first)
    window = json.dumps({"from": "2026-11-25T00:00:00Z", "to": "2026-11-26T00:00:00Z"})
    msg = await nc.request(query_subject("sales_summary"), window.encode(), timeout=10)
    reply = reply_decoder.decode(msg.data)
    assert reply.version == first and reply.data["orders"] == 1
    second = await publish_events(js, order("O-2", "2.00", time="2026-11-25T10:30:00Z"))
    await materializer.wait_for_sequence(second)
    msg = await nc.request(query_subject("sales_summary"), window.encode(), timeout=10)
    reply = reply_decoder.decode(msg.data)
    assert second > first
    assert reply.version == second and reply.data["orders"] == 2


async def test_a_restart_resumes_after_the_last_committed_batch(
    materializer_settings: Settings, js: JetStreamContext, nc: NATS
) -> None:
    async with Materializer(materializer_settings) as first:
        last = await publish_events(
            js, *(order(f"O-{i}", "1.00", time="2026-11-25T10:00:00Z") for i in range(50))
        )
        await first.wait_for_sequence(last)
    # Published while no materializer runs.
    last = await publish_events(
        js, *(order(f"O-{i}", "1.00", time="2026-11-25T10:00:00Z") for i in range(50, 80))
    )

    async with Materializer(materializer_settings) as second:
        await second.wait_for_sequence(last)
        rows = await ask(
            nc, "sales_by_hour", **{"from": "2026-11-25T10:00:00Z", "to": "2026-11-25T11:00:00Z"}
        )
        pipeline = await ask(nc, "pipeline")

    assert rows[0]["orders"] == 80
    assert pipeline["events_applied"] == 80
    assert pipeline["last_sequence"] == last
    assert pipeline["lag"] == 0


async def test_bad_query_parameters_get_a_bad_request_reply(
    materializer: Materializer, nc: NATS
) -> None:
    msg = await nc.request(query_subject("sales_by_hour"), b'{"from": "yesterday"}', timeout=10)
    reply = reply_decoder.decode(msg.data)
    assert reply.error is not None
    assert reply.error.code == "bad_request"
    assert reply.error.message

    msg = await nc.request(query_subject("top_products"), b"not json", timeout=10)
    reply = reply_decoder.decode(msg.data)
    assert reply.error is not None and reply.error.code == "bad_request"


async def test_rejected_events_are_counted_and_do_not_block_the_stream(
    materializer: Materializer, js: JetStreamContext, nc: NATS
) -> None:
    last = await publish_events(
        js,
        b"{not json",
        order("O-1", "1.00", time="2026-11-25T10:00:00Z"),
    )
    await materializer.wait_for_sequence(last)

    pipeline = await ask(nc, "pipeline")
    rejected = await ask(nc, "rejected_events")

    assert (pipeline["events_applied"], pipeline["events_rejected"]) == (1, 1)
    assert rejected[0]["subject"] == "pulse.events.bad.input"
    assert "JSON" in rejected[0]["reason"]


async def test_http_endpoints_report_health_stats_and_metrics(
    materializer_settings: Settings, js: JetStreamContext
) -> None:
    port = free_port()
    settings = dataclasses.replace(materializer_settings, http_port=port)
    async with Materializer(settings) as running:
        last = await publish_events(js, order("O-1", "1.00", time="2026-11-25T10:00:00Z"))
        await running.wait_for_sequence(last)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            health = await client.get("/health")
            stats = await client.get("/stats")
            metrics = await client.get("/metrics")

    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert stats.json()["last_sequence"] == last
    assert stats.json()["events_applied"] == 1
    assert "pulse_materializer_events_applied_total 1.0" in metrics.text


async def test_stats_are_answered_over_nats_too(materializer: Materializer, nc: NATS) -> None:
    msg = await nc.request("pulse.bi.materializer.stats", b"", timeout=5)
    assert msgspec.json.decode(msg.data)["last_sequence"] == 0
    msg = await nc.request("pulse.bi.materializer.metrics", b"", timeout=5)
    assert b"pulse_materializer_batches_total" in msg.data


async def test_health_turns_unavailable_when_nats_goes_away(
    materializer_settings: Settings, nats_server: Any
) -> None:
    async with Materializer(materializer_settings) as running:
        assert running.healthy() == (True, "ok")
        nats_server.stop()
        async with asyncio.timeout(10):
            while running.healthy()[0]:
                await asyncio.sleep(0.05)
        assert running.healthy() == (False, "not connected to NATS")
        nats_server.start()
        async with asyncio.timeout(20):
            while not running.healthy()[0]:
                await asyncio.sleep(0.1)


@pytest.mark.parametrize("duplicate_header", [True, False])
async def test_the_same_event_published_twice_counts_once(
    materializer: Materializer, js: JetStreamContext, nc: NATS, duplicate_header: bool
) -> None:
    event = order("O-1", "10.00", time="2026-11-25T10:00:00Z", id="evt-1")
    await publish_events(js, event)
    if duplicate_header:
        # JetStream drops it inside the duplicate window.
        await publish_events(js, event)
    else:
        # A re-publish after the window: reaches the stream, must be a no-op.
        await js.publish("pulse.events.orders.created", json.dumps(event).encode())
    last = await publish_events(js, order("O-2", "1.00", time="2026-11-25T10:00:00Z"))
    await materializer.wait_for_sequence(last)

    rows = await ask(
        nc, "sales_by_hour", **{"from": "2026-11-25T10:00:00Z", "to": "2026-11-25T11:00:00Z"}
    )
    pipeline = await ask(nc, "pipeline")

    assert rows[0]["orders"] == 2
    assert rows[0]["gross_revenue"] == "11.00"
    assert pipeline["events_rejected"] == 0


async def test_a_writer_slower_than_the_stream_pauses_delivery_and_loses_nothing(
    materializer_settings: Settings, js: JetStreamContext, nc: NATS
) -> None:
    orders = [order(f"O-{i}", "1.00", time="2026-11-25T10:00:00Z") for i in range(3000)]
    last = await publish_events(js, *orders)
    # Tiny batches: the buffer fills faster than the writer empties it.
    settings = dataclasses.replace(materializer_settings, batch_max_events=25)
    async with Materializer(settings) as running:
        await running.wait_for_sequence(last, timeout=60)
        rows = await ask(
            nc, "sales_by_hour", **{"from": "2026-11-25T10:00:00Z", "to": "2026-11-25T11:00:00Z"}
        )
        assert running.ingestor is not None
        pauses = running.ingestor.pauses

    assert pauses > 0
    assert rows[0]["orders"] == 3000


async def test_requests_for_the_same_named_query_are_answered_concurrently(
    materializer: Materializer, nc: NATS
) -> None:
    """One slow query must not hold every other request for that query behind it."""
    running = 0
    most = 0
    lock = threading.Lock()

    def slow(query: Callable[..., Any]) -> Callable[..., Any]:
        def slow_query(*args: Any, **kwargs: Any) -> Any:
            nonlocal running, most
            with lock:
                running += 1
                most = max(most, running)
            try:
                time.sleep(0.3)
                return query(*args, **kwargs)
            finally:
                with lock:
                    running -= 1

        return slow_query

    with answering_through(materializer, slow):
        window = {"from": "2026-11-25T00:00:00Z", "to": "2026-11-26T00:00:00Z"}
        results = await asyncio.gather(*(ask(nc, "sales_summary", **window) for _ in range(4)))
    assert all(result["orders"] == 0 for result in results)
    assert most == min(4, materializer.settings.query_workers)


async def test_a_reply_says_the_cpu_time_its_query_thread_spent_not_the_time_it_took(
    materializer: Materializer, nc: NATS
) -> None:
    """What a gateway charges a live query (docs/GATEWAY.md, "A group's window")."""

    def waiting(query: Callable[..., Any]) -> Callable[..., Any]:
        def answer(*args: Any, **kwargs: Any) -> Any:
            time.sleep(0.5)  # as a query waiting on the writer would: no CPU
            return query(*args, **kwargs)

        return answer

    def working(query: Callable[..., Any]) -> Callable[..., Any]:
        def answer(*args: Any, **kwargs: Any) -> Any:
            burn_cpu(0.3)
            return query(*args, **kwargs)

        return answer

    window = json.dumps({"from": "2026-11-25T00:00:00Z", "to": "2026-11-26T00:00:00Z"})
    said = {}
    for name, wrap in (("waiting", waiting), ("working", working)):
        with answering_through(materializer, wrap):
            msg = await nc.request(query_subject("sales_summary"), window.encode(), timeout=10)
        reply = reply_decoder.decode(msg.data)
        assert reply.error is None and reply.data["orders"] == 0
        assert reply.cpu_seconds is not None
        said[name] = reply.cpu_seconds
    assert 0 <= said["waiting"] < 0.25
    assert said["working"] >= 0.3
    # An error reply says nothing: no query ran.
    msg = await nc.request(query_subject("sales_by_hour"), b'{"from": "yesterday"}', timeout=10)
    assert reply_decoder.decode(msg.data).cpu_seconds is None


async def test_a_result_too_large_for_nats_is_asked_again_smaller_and_says_all_its_cpu(
    materializer: Materializer, nc: NATS
) -> None:
    from materializer.queries import QueryResult

    asked: list[Any] = []

    def oversized_first(query: Callable[..., Any]) -> Callable[..., Any]:
        def answer(name: str, params: dict[str, Any], **kwargs: Any) -> Any:
            asked.append(params.get("limit"))
            if len(asked) == 1:
                burn_cpu(0.2)
                # More than the server's max_payload (1 MiB) once encoded.
                return QueryResult([{"sku": "x" * 1000}] * 2000)
            return query(name, params, **kwargs)

        return answer

    with answering_through(materializer, oversized_first):
        msg = await nc.request(query_subject("stock_levels"), b"{}", timeout=10)
    reply = reply_decoder.decode(msg.data)
    assert reply.error is None and reply.data == []
    # The page halved (from the default 1000), and the discarded answer's CPU counted.
    assert asked == [None, 500]
    assert reply.cpu_seconds is not None and reply.cpu_seconds >= 0.2
