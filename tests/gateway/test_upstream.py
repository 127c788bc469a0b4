"""Named queries when the materializer is slow: asked again, answered, never retried on errors."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from nats.micro.request import Request

from gateway.app import state
from gateway.settings import Settings
from tests.gateway.conftest import Canned, Server, until

PIPELINE = {"query": "{ pipeline { lastSequence } }"}


@dataclass
class SlowFirst(Canned):
    """Answers like Canned, but sits on the first `slow` requests longer than the timeout."""

    slow: int = 1
    delay: float = 1.0
    #: Requests as they arrive (`requests` logs them as they are answered).
    arrived: int = 0
    late: set[asyncio.Task[None]] = field(default_factory=set)

    def _handler(self, name: str) -> Any:
        answer = super()._handler(name)

        async def late(request: Request) -> None:
            await asyncio.sleep(self.delay)  # the gateway gives up on this one meanwhile
            await answer(request)

        async def handle(request: Request) -> None:
            self.arrived += 1
            if self.slow > 0:
                # Concurrently, as the materializer answers: the retry is not held up.
                self.slow -= 1
                task = asyncio.create_task(late(request))
                self.late.add(task)
                task.add_done_callback(self.late.discard)
                return
            await answer(request)

        return handle


@pytest.fixture
async def slow(nc: Any) -> Any:
    service = await SlowFirst(nc).start()
    try:
        yield service
    finally:
        await service.stop()


def retries(server: Server, reason: str) -> float:
    gateway = state(server.server.config.app)  # type: ignore[union-attr]
    return float(gateway.metrics.upstream_retries.labels(reason)._value.get())


async def ask_pipeline(
    server_factory: Any, settings: Settings, **changes: Any
) -> tuple[Server, dict[str, Any]]:
    """A gateway on changed settings, and its reply to PIPELINE over HTTP."""
    server: Server = server_factory(settings.replace(**changes))
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        return server, (await http.post("/graphql", json=PIPELINE)).json()


async def test_a_timed_out_reply_is_asked_again_and_answered(
    settings: Settings, slow: SlowFirst, server_factory: Any
) -> None:
    server, reply = await ask_pipeline(server_factory, settings, query_timeout=0.3, query_retries=2)
    assert reply == {"data": {"pipeline": {"lastSequence": 12}}}
    assert slow.arrived == 2
    assert retries(server, "timeout") == 1


async def test_without_retries_the_timeout_is_an_upstream_error(
    settings: Settings, slow: SlowFirst, server_factory: Any
) -> None:
    server, reply = await ask_pipeline(server_factory, settings, query_timeout=0.3, query_retries=0)
    error = reply["errors"][0]
    assert error["extensions"]["code"] == "UPSTREAM_UNAVAILABLE"
    assert "did not answer pipeline within 0.3 s" in error["message"]
    assert retries(server, "timeout") == 0


async def test_every_attempt_timing_out_gives_one_clear_error_after_the_retries(
    settings: Settings, slow: SlowFirst, server_factory: Any
) -> None:
    slow.slow = 10
    server, reply = await ask_pipeline(server_factory, settings, query_timeout=0.2, query_retries=2)
    assert reply["errors"][0]["extensions"]["code"] == "UPSTREAM_UNAVAILABLE"
    assert slow.arrived == 3
    assert retries(server, "timeout") == 2


async def test_errors_the_materializer_sends_are_not_retried(
    settings: Settings, canned: Canned, server_factory: Any
) -> None:
    server: Server = server_factory(settings.replace(query_retries=2))
    query = '{ salesByHour(from: "2000-01-01T00:00:00Z", to: "2000-01-02T00:00:00Z") { hour } }'
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        reply = (await http.post("/graphql", json={"query": query})).json()
    assert reply["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert len([n for n, _ in canned.requests if n == "sales_by_hour"]) == 1


async def test_health_does_not_retry(
    settings: Settings, slow: SlowFirst, server_factory: Any
) -> None:
    slow.slow, slow.delay = 1, 1.5
    server: Server = server_factory(settings.replace(query_retries=2))
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        response = await http.get("/health")
    assert response.status_code == 503
    assert "did not answer" in json.loads(response.content)["reason"]
    assert retries(server, "timeout") == 0


async def test_the_query_cache_keeps_only_the_newest_result_of_each_query(
    client: httpx.AsyncClient, canned: Canned
) -> None:
    """Results of superseded data generations are dropped, not kept until evicted."""
    gateway = state(client.app)  # type: ignore[attr-defined]
    await canned.heartbeat_until_known(gateway.versions)
    queries = ["{ lowStock { sku onHand } }", '{ lowStock(warehouse: "WH-1") { sku } }']
    for on_hand in range(5):
        canned.data["low_stock"] = [{**canned.data["low_stock"][0], "on_hand": on_hand}]
        await canned.notify(["stock"], skus=["SKU-1"], warehouses=["WH-1"])
        await until(lambda: gateway.versions.seen == canned.version)
        for query in queries:
            reply = (await client.post("/graphql", json={"query": query})).json()
            assert "errors" not in reply
        assert reply["data"]["lowStock"][0]["sku"] == "SKU-1"
    assert gateway.upstream.cache_stats()["entries"] == 2
    assert [n for n, _ in canned.requests].count("low_stock") == 10
    # Unchanged data still comes from the cache.
    await client.post("/graphql", json={"query": queries[0] + " "})
    assert [n for n, _ in canned.requests].count("low_stock") == 10
