"""Two gateways behind one address: requests and subscriptions alternate between them,
and both serve the same versions and refresh live queries from the same notices."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import websockets
from nats.js import JetStreamContext

from gateway.settings import Settings as GatewaySettings
from pulse_bi.natsserver import LocalNatsServer, free_port
from tests.cluster.balancer import RoundRobin
from tests.cluster.conftest import order_event
from tests.conftest import publish_events
from tests.gateway.conftest import until

pytestmark = pytest.mark.slow

WINDOW = 'from: "2000-01-01T00:00:00Z", to: "2100-01-01T00:00:00Z"'
QUERY = f"{{ salesSummary({WINDOW}) {{ orders }} }}"
LIVE = f"subscription {{ salesSummary({WINDOW}) {{ orders }} }}"


async def frame(ws: Any, timeout: float = 10.0) -> dict[str, Any]:
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if message["type"] not in ("ka", "ping", "pong"):
            return message


async def orders_over(ws: Any) -> int:
    message = await frame(ws)
    assert message["type"] == "next", message
    return int(message["payload"]["data"]["salesSummary"]["orders"])


async def test_gateways_behind_one_address_agree_and_refresh_together(
    nats_server: LocalNatsServer, materializer: Any, js: JetStreamContext, server_factory: Any
) -> None:
    gateways = [
        server_factory(
            GatewaySettings(nats_url=nats_server.url, host="127.0.0.1", port=free_port())
        )
        for _ in range(2)
    ]
    balancer = await RoundRobin([g.settings.port for g in gateways]).start()
    ws_url = f"ws://127.0.0.1:{balancer.port}/graphql"
    sockets = []
    try:
        sequence = await publish_events(js, order_event())
        await materializer.wait_for_sequence(sequence)
        for index in range(4):
            ws = await websockets.connect(ws_url, subprotocols=["graphql-transport-ws"])  # type: ignore[list-item]
            sockets.append(ws)
            await ws.send('{"type": "connection_init"}')
            assert (await frame(ws))["type"] == "connection_ack"
            await ws.send(
                json.dumps({"id": f"s{index}", "type": "subscribe", "payload": {"query": LIVE}})
            )
            assert await orders_over(ws) == 1
        assert balancer.connections == [2, 2]  # two live queries on each gateway
        expected = 1
        for batch in (3, 5, 2):
            sequence = await publish_events(js, *(order_event() for _ in range(batch)))
            await materializer.wait_for_sequence(sequence)
            expected += batch
            for ws in sockets:
                # Both gateways refresh from the same notice; a frame may be skipped when
                # notices come faster than refreshes, never one going back.
                seen = await orders_over(ws)
                while seen < expected:
                    next_seen = await orders_over(ws)
                    assert next_seen > seen
                    seen = next_seen
                assert seen == expected
        # Plain requests, each on a new connection: they alternate too, all agree.
        fresh = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=balancer.url, limits=fresh, timeout=10) as http:
            answers = []
            for _ in range(6):
                body = (await http.post("/graphql", json={"query": QUERY})).json()
                answers.append(body["data"]["salesSummary"]["orders"])
            assert answers == [expected] * 6

            async def versions() -> list[int]:
                return [(await http.get("/stats")).json()["data_version"] for _ in range(2)]

            # Both know the materializer's version (from notices or heartbeats).
            await until(
                lambda: _equal(versions(), materializer.last_sequence), timeout=10, interval=0.1
            )
        assert balancer.connections[0] >= 6 and balancer.connections[1] >= 6
    finally:
        for ws in sockets:
            await ws.close()
        await balancer.stop()


async def _equal(versions: Any, version: int) -> bool:
    return bool(await versions == [version, version])
