"""Seed REST endpoints, /health, /stats, /metrics, and recovery when the materializer returns."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import httpx
import pytest
import websockets

from gateway.app import create_app, state
from gateway.settings import Settings
from tests.gateway.conftest import Canned, until


async def test_sales_hourly_asks_for_the_last_n_hours(
    client: httpx.AsyncClient, canned: Canned
) -> None:
    asked = dt.datetime.now(dt.UTC)
    response = await client.get("/query/sales/hourly", params={"hours": 6})
    assert response.status_code == 200
    body = response.json()
    assert body["data"][0]["net_revenue"] == 200.1
    assert body["count"] == 1
    assert isinstance(body["execution_time_ms"], float)
    name, params = canned.requests[-1]
    start = dt.datetime.fromisoformat(params["from"])
    end = dt.datetime.fromisoformat(params["to"])
    assert name == "sales_by_hour"
    assert end - start == dt.timedelta(hours=6)
    assert end.minute == 0 and end > asked


async def test_low_stock_and_overdue_answer_with_execution_time(
    client: httpx.AsyncClient,
) -> None:
    low = (await client.get("/query/inventory/low-stock")).json()
    assert low["data"][0]["sku"] == "SKU-1" and "execution_time_ms" in low
    overdue = (await client.get("/query/ar/overdue")).json()
    assert overdue["data"][0]["balance"] == 25.55 and "execution_time_ms" in overdue


async def test_bad_rest_parameter_is_400(client: httpx.AsyncClient) -> None:
    response = await client.get("/query/sales/hourly", params={"hours": "lots"})
    assert response.status_code == 400
    assert "hours must be an integer" in response.json()["errors"][0]["message"]


async def test_health_stats_and_metrics(client: httpx.AsyncClient) -> None:
    health = await client.get("/health")
    assert health.status_code == 200
    body = health.json()
    # The canned materializer reports lost events: the gateway serves, and says so.
    assert body["checks"] == {
        "nats": True,
        "materializer": True,
        "materializer_status": "degraded",
    }
    assert body["status"] == "degraded"
    assert body["reason"].startswith("materializer degraded: 3 events missing")
    await client.post("/graphql", json={"query": "{ pipeline { lag } }"})
    stats = (await client.get("/stats")).json()
    assert stats["nats_connected"] is True
    assert stats["live"] == {"groups": 0, "subscriptions": 0}
    assert "execution_time_ms" in stats
    metrics = (await client.get("/metrics")).text
    assert 'gateway_http_requests_total{path="/graphql",status="200"} 1.0' in metrics
    assert "gateway_active_subscriptions 0.0" in metrics
    assert "gateway_upstream_request_seconds_count" in metrics


async def test_materializer_down_gives_clear_error_and_503_then_recovers(
    settings: Settings, canned: Canned, server_factory: Any
) -> None:
    server = server_factory(settings)
    query = {"query": "{ pipeline { lastSequence } }"}
    async with httpx.AsyncClient(base_url=server.url) as http:
        ws = await websockets.connect(server.ws_url, subprotocols=["graphql-transport-ws"])  # type: ignore[list-item]
        await ws.send('{"type": "connection_init"}')
        await ws.recv()
        await ws.send(
            '{"id": "1", "type": "subscribe", "payload": {"query": '
            '"subscription { pipeline { lastSequence } }"}}'
        )
        assert "lastSequence" in await ws.recv()
        await canned.stop()

        health = await http.get("/health")
        assert health.status_code == 503
        assert "materializer is not running" in health.json()["reason"]
        response = await http.post("/graphql", json=query)
        assert response.status_code == 200
        error = response.json()["errors"][0]
        assert error["extensions"]["code"] == "UPSTREAM_UNAVAILABLE"
        assert "materializer" in error["message"]
        # The live query sees the error on the next change, too.
        await canned.notify(["pipeline"])
        assert "UPSTREAM_UNAVAILABLE" in await asyncio.wait_for(ws.recv(), 5)

        canned.data["pipeline"] = {**canned.data["pipeline"], "last_sequence": 40}
        await canned.start()
        await canned.heartbeat()
        assert '"lastSequence":40' in await asyncio.wait_for(ws.recv(), 5)
        assert (await http.get("/health")).status_code == 200
        ok = await http.post("/graphql", json=query)
        assert ok.json() == {"data": {"pipeline": {"lastSequence": 40}}}
        await ws.close()


async def test_gateway_starts_without_nats_and_connects_when_it_appears(
    nats_server: Any,
) -> None:
    nats_server.stop()
    settings = Settings(nats_url=nats_server.url)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            health = await http.get("/health")
            assert health.status_code == 503
            assert "not connected to NATS" in health.json()["reason"]
            response = await http.post("/graphql", json={"query": "{ pipeline { lag } }"})
            assert response.json()["errors"][0]["extensions"]["code"] == "UPSTREAM_UNAVAILABLE"
            nats_server.start()
            await until(lambda: state(app).upstream.connected, timeout=10)


@pytest.mark.parametrize("path", ["/health", "/query/inventory/low-stock"])
async def test_rest_needs_a_token_when_auth_is_on_except_health(
    settings: Settings, canned: Canned, path: str
) -> None:
    app = create_app(settings.replace(jwt_secret="x" * 32))
    async with app.router.lifespan_context(app):
        await until(lambda: state(app).upstream.connected)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            response = await http.get(path)
    assert response.status_code == (200 if path == "/health" else 401)


async def test_kiosk_page_is_mounted_under_kiosk(client: httpx.AsyncClient) -> None:
    response = await client.get("/kiosk", follow_redirects=True)
    assert response.status_code == 200
    assert "text/html" in response.headers["content-type"]
