"""A live materializer over a real nats-server stream that holds poison: it never crashes,
stays healthy, and stores every bad message (docs/EVENTS.md, "Dead letters")."""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from materializer.app import Materializer
from materializer.settings import Settings
from materializer.store import Store
from pulse_bi.natsserver import free_port
from tests.conftest import cloud_event, publish_events
from tests.materializer.poison import POISON
from tests.materializer.test_robustness import narrow_the_hourly_revenue
from tests.materializer.test_runtime import ask

MAX_MONEY = "9999999999999999.99"


def order(order_id: str, total: str = "1.00") -> dict[str, Any]:
    return cloud_event(
        "order.created",
        {
            "order_id": order_id,
            "customer_id": "C-1",
            "channel": "web",
            "total_amount": total,
            "lines": [{"sku": "SKU-1", "quantity": 1, "unit_price": total}],
        },
        time="2026-11-25T10:04:05Z",
    )


async def health(port: int) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        response = await client.get("/health")
    return response.status_code, response.json()


async def test_a_restart_over_a_stream_holding_poison_does_not_crash(
    materializer_settings: Settings, js: JetStreamContext, nc: NATS
) -> None:
    poison = [payload for _, payload, _ in POISON]
    # The stream holds poison before the materializer ever starts.
    last = await publish_events(js, *poison, order("O-1"), *poison[:5], order("O-2"))
    port = free_port()
    settings = dataclasses.replace(materializer_settings, http_port=port)
    async with Materializer(settings) as running:
        await running.wait_for_sequence(last)
        status, body = await health(port)
        assert (status, body["status"], body["reason"]) == (200, "ok", "ok")
        assert body["events_rejected"] == len(poison) + 5
        assert running.ingestor is not None and running.ingestor.failed is None
    # Started again over the same file and stream, more poison arriving meanwhile.
    last = await publish_events(js, *poison, order("O-3"))
    async with Materializer(settings) as running:
        await running.wait_for_sequence(last)
        status, body = await health(port)
        assert (status, body["status"]) == (200, "ok")
        pipeline = await ask(nc, "pipeline")
        assert pipeline["last_sequence"] == last
        assert pipeline["events_applied"] == 3
        assert pipeline["events_rejected"] == 2 * len(poison) + 5
        rejected = await ask(nc, "rejected_events", limit=500)
        assert len(rejected) == 2 * len(poison) + 5
        assert len({row["sequence"] for row in rejected}) == len(rejected)
        summary = await ask(
            nc, "sales_summary", **{"from": "2026-11-25T00:00:00Z", "to": "2026-11-26T00:00:00Z"}
        )
        assert summary["orders"] == 3


async def test_an_event_that_fails_in_sql_is_dead_lettered_while_running(
    materializer_settings: Settings, js: JetStreamContext, nc: NATS
) -> None:
    # A file whose hourly revenue (what batches write, m0012) is DECIMAL(17,2): an order
    # of the largest amount fails in SQL.
    store = Store.open(materializer_settings.duckdb_path)
    narrow_the_hourly_revenue(store.conn)
    store.close()
    port = free_port()
    settings = dataclasses.replace(materializer_settings, http_port=port)
    async with Materializer(settings) as running:
        last = await publish_events(
            js, order("O-1", "12.00"), order("O-2", MAX_MONEY), order("O-3", "0.00")
        )
        await running.wait_for_sequence(last)
        status, body = await health(port)
        assert (status, body["status"]) == (200, "ok")
        [row] = await ask(nc, "rejected_events")
        assert row["sequence"] == 2
        assert row["reason"].startswith("internal: ConversionException: ")
        pipeline = await ask(nc, "pipeline")
        assert (pipeline["events_applied"], pipeline["events_rejected"]) == (2, 1)
        assert running.stats()["events_rejected"] == 1
