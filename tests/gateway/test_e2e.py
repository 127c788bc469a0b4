"""End to end: real nats-server, the real materializer, the gateway on real uvicorn.

Events go into JetStream as the ERP services publish them; the answers come back over
HTTP and over both WebSocket protocols.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from typing import Any

import httpx
import pytest
import websockets
from nats.js import JetStreamContext

from gateway.app import state
from gateway.settings import Settings
from tests.conftest import cloud_event, publish_events
from tests.gateway.conftest import Server, until

pytestmark = pytest.mark.slow

NOW = dt.datetime.now(dt.UTC).replace(minute=5, second=0, microsecond=0)
HOUR = NOW.replace(minute=0)
FROM, TO = HOUR.isoformat(), (HOUR + dt.timedelta(hours=1)).isoformat()


def order(
    total: str, quantity: int, channel: str = "web", order_id: str | None = None
) -> dict[str, Any]:
    return cloud_event(
        "order.created",
        {
            "order_id": order_id or uuid.uuid4().hex,
            "customer_id": "C-1",
            "channel": channel,
            "total_amount": total,
            "lines": [{"sku": "SKU-1", "quantity": quantity, "unit_price": total}],
        },
        time=NOW.isoformat(),
    )


@pytest.fixture
def server(materializer: Any, settings: Settings, server_factory: Any) -> Server:
    return server_factory(settings)


async def receive(ws: Any, timeout: float = 10.0) -> dict[str, Any]:
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if message["type"] not in ("ka", "ping", "pong"):
            return message


async def test_published_orders_show_in_sales_by_hour_over_http(
    server: Server, materializer: Any, js: JetStreamContext
) -> None:
    sequence = await publish_events(js, order("100.10", 2), order("50.05", 1, channel="store"))
    await materializer.wait_for_sequence(sequence)
    query = (
        "query($from: DateTime, $to: DateTime) { salesByHour(from: $from, to: $to) "
        "{ hour orders grossRevenue netRevenue units averageOrderValue } "
        'web: salesSummary(from: $from, to: $to, channel: "web") { orders netRevenue } }'
    )
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.post(
            "/graphql",
            json={
                "query": query,
                "variables": {
                    "from": FROM,
                    "to": int((HOUR + dt.timedelta(hours=1)).timestamp() * 1000),
                },
            },
        )
        assert response.status_code == 200, response.text
        assert '"grossRevenue":150.15' in response.text
        data = response.json()["data"]
        [row] = data["salesByHour"]
        aov = row.pop("averageOrderValue")
        assert row == {
            "hour": HOUR.isoformat(),
            "orders": 2,
            "grossRevenue": 150.15,
            "netRevenue": 150.15,
            "units": 3,
        }
        assert aov in (75.07, 75.08)  # 150.15 / 2, rounded to the cent by the materializer
        assert data["web"] == {"orders": 1, "netRevenue": 100.1}

        rest = (await http.get("/query/sales/hourly", params={"hours": 24})).json()
        assert rest["data"][-1]["orders"] == 2
        assert rest["execution_time_ms"] >= 0
        assert (await http.get("/health")).json()["status"] == "ok"
        assert (await http.get("/query/inventory/low-stock")).json()["data"] == []
        assert (await http.get("/query/ar/overdue")).json()["data"] == []


@pytest.mark.parametrize(
    ("protocol", "start", "result"),
    [("graphql-transport-ws", "subscribe", "next"), ("graphql-ws", "start", "data")],
)
async def test_subscriber_receives_the_updated_result_after_events(
    server: Server, materializer: Any, js: JetStreamContext, protocol: str, start: str, result: str
) -> None:
    sequence = await publish_events(js, order("10.00", 1))
    await materializer.wait_for_sequence(sequence)
    ws = await websockets.connect(server.ws_url, subprotocols=[protocol])  # type: ignore[list-item]
    await ws.send('{"type": "connection_init"}')
    assert (await receive(ws))["type"] == "connection_ack"
    subscription = (
        f'subscription {{ salesSummary(from: "{FROM}", to: "{TO}") {{ orders grossRevenue }} }}'
    )
    await ws.send(json.dumps({"id": "s", "type": start, "payload": {"query": subscription}}))
    first = await receive(ws)
    assert first["type"] == result
    assert first["payload"]["data"]["salesSummary"] == {"orders": 1, "grossRevenue": 10}

    await publish_events(js, order("5.25", 3))
    update = await receive(ws)
    assert update["payload"]["data"]["salesSummary"] == {"orders": 2, "grossRevenue": 15.25}

    # Stock movements do not touch sales: no new result for this subscription.
    stock = cloud_event(
        "stock.moved",
        {"sku": "SKU-9", "warehouse": "WH-1", "quantity_delta": 5, "reason": "receipt"},
    )
    sequence = await publish_events(js, stock)
    await materializer.wait_for_sequence(sequence)
    with pytest.raises(TimeoutError):
        await receive(ws, timeout=0.7)
    await ws.close()


async def test_sales_by_channel_query_and_live_twin_follow_the_registry(
    server: Server, materializer: Any, js: JetStreamContext
) -> None:
    """The query added through the registry alone: Query field, Subscription twin,
    relevance by channel, all without a line of gateway code of its own."""
    sequence = await publish_events(
        js, order("30.00", 1, channel="web"), order("10.00", 1, channel="store")
    )
    await materializer.wait_for_sequence(sequence)
    fields = "salesByChannel(from: $from, to: $to) { channel orders netRevenue }"
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.post(
            "/graphql",
            json={
                "query": f"query($from: DateTime, $to: DateTime) {{ {fields} }}",
                "variables": {"from": FROM, "to": TO},
            },
        )
    assert response.json()["data"]["salesByChannel"] == [
        {"channel": "web", "orders": 1, "netRevenue": 30},
        {"channel": "store", "orders": 1, "netRevenue": 10},
    ]
    ws = await websockets.connect(server.ws_url, subprotocols=["graphql-transport-ws"])  # type: ignore[list-item]
    await ws.send('{"type": "connection_init"}')
    assert (await receive(ws))["type"] == "connection_ack"
    window = f'from: "{FROM}", to: "{TO}"'
    live = f'subscription {{ salesByChannel({window}, channel: "store") {{ orders }} }}'
    await ws.send(json.dumps({"id": "c", "type": "subscribe", "payload": {"query": live}}))
    assert (await receive(ws))["payload"]["data"]["salesByChannel"] == [{"orders": 1}]
    # An order of another channel cannot change this result: no frame.
    sequence = await publish_events(js, order("7.00", 1, channel="web"))
    await materializer.wait_for_sequence(sequence)
    with pytest.raises(TimeoutError):
        await receive(ws, timeout=0.7)
    await publish_events(js, order("2.50", 1, channel="store"))
    assert (await receive(ws))["payload"]["data"]["salesByChannel"] == [{"orders": 2}]
    await ws.close()


@pytest.fixture
def distrusting(settings: Settings, server_factory: Any) -> Server:
    """A gateway that stops trusting its cache after 1.5 s without a heartbeat.

    Heartbeats come every 0.5 s here, so 1.5 s of silence means the materializer is down.
    """
    server: Server = server_factory(settings.replace(version_ttl=1.5))
    return server


async def test_materializer_down_gives_error_and_503_then_recovers(
    materializer_settings: Any, distrusting: Server, js: JetStreamContext
) -> None:
    from materializer.app import Materializer

    server = distrusting
    query = {"query": "{ pipeline { lastSequence eventsApplied } }"}
    async with httpx.AsyncClient(base_url=server.url) as http:
        async with Materializer(materializer_settings) as running:
            sequence = await publish_events(js, order("1.00", 1))
            await running.wait_for_sequence(sequence)
            assert (await http.get("/health")).status_code == 200
            ok = (await http.post("/graphql", json=query)).json()
            assert ok["data"]["pipeline"]["lastSequence"] == sequence
        down = await http.get("/health")
        assert down.status_code == 503
        assert "materializer" in down.json()["reason"]
        failed: dict[str, Any] = {}

        async def query_fails() -> bool:
            failed.update((await http.post("/graphql", json=query)).json())
            return "errors" in failed

        await until(query_fails, timeout=5)
        assert failed["errors"][0]["extensions"]["code"] == "UPSTREAM_UNAVAILABLE"
        assert "materializer" in failed["errors"][0]["message"]
        assert failed["data"] is None

        sequence = await publish_events(js, order("2.00", 1))
        async with Materializer(materializer_settings) as running:
            await running.wait_for_sequence(sequence)
            assert (await http.get("/health")).status_code == 200
            back = (await http.post("/graphql", json=query)).json()
            assert back["data"]["pipeline"] == {"lastSequence": sequence, "eventsApplied": 2}


async def test_live_subscribers_see_the_materializer_outage_and_the_recovery(
    materializer_settings: Any, distrusting: Server, js: JetStreamContext
) -> None:
    from materializer.app import Materializer

    server = distrusting
    subscription = "subscription { pipeline { eventsApplied } }"
    async with Materializer(materializer_settings) as running:
        sequence = await publish_events(js, order("1.00", 1))
        await running.wait_for_sequence(sequence)
        ws = await websockets.connect(server.ws_url, subprotocols=["graphql-transport-ws"])  # type: ignore[list-item]
        await ws.send('{"type": "connection_init"}')
        assert (await receive(ws))["type"] == "connection_ack"
        await ws.send(
            json.dumps({"id": "p", "type": "subscribe", "payload": {"query": subscription}})
        )
        first = await receive(ws)
        assert first["payload"]["data"]["pipeline"] == {"eventsApplied": 1}

    # No heartbeat any more: the subscriber is told, without asking again.
    outage = await receive(ws, timeout=15)
    assert outage["type"] == "next"
    assert outage["payload"]["errors"][0]["extensions"]["code"] == "UPSTREAM_UNAVAILABLE"

    sequence = await publish_events(js, order("2.00", 1))
    async with Materializer(materializer_settings) as running:
        await running.wait_for_sequence(sequence)
        while True:
            back = await receive(ws, timeout=15)
            if "errors" not in back["payload"]:
                break
        assert back["payload"]["data"]["pipeline"] == {"eventsApplied": 2}
    await ws.close()


SECRET = "e2e-secret-long-enough-for-hs256-0123456789"


@pytest.mark.parametrize(
    ("body", "headers", "status", "code"),
    [
        ({"query": "{ pipeline { lag "}, {}, 400, "GRAPHQL_PARSE_FAILED"),
        ({"query": "{ pipeline { nope } }"}, {}, 400, "GRAPHQL_VALIDATION_FAILED"),
        (
            {"query": "{ arAging { byCustomer { customerId } } }"},
            {},
            200,
            None,
        ),
        (
            {"query": "{ " + " ".join(f"a{i}: pipeline {{ lag }}" for i in range(31)) + " }"},
            {},
            400,
            "GRAPHQL_VALIDATION_FAILED",
        ),
        (
            {
                # Deeper than GATEWAY_MAX_INTROSPECTION_DEPTH (20) on defaults.
                "query": "{ __schema { types { fields { type { "
                + "ofType { " * 16
                + "name "
                + "} " * 21
            },
            {},
            400,
            "GRAPHQL_VALIDATION_FAILED",
        ),
        (
            {
                "query": "query($n: Int) { stockMovements(limit: $n) { sku } }",
                "variables": {"n": "x"},
            },
            {},
            400,
            "BAD_USER_INPUT",
        ),
        ({"query": "{ pipeline { lag } }"}, {"authorization": None}, 401, "UNAUTHENTICATED"),
        (
            {"query": "{ pipeline { lag } }"},
            {"authorization": "Bearer x.y.z"},
            401,
            "UNAUTHENTICATED",
        ),
        ({"query": "{ pipeline { lag } }"}, {"authorization": "expired"}, 401, "UNAUTHENTICATED"),
    ],
)
async def test_bad_requests_get_the_right_status_and_error_over_real_http(
    materializer: Any,
    settings: Settings,
    server_factory: Any,
    body: dict[str, Any],
    headers: dict[str, Any],
    status: int,
    code: str | None,
) -> None:
    import time

    import jwt

    server = server_factory(settings.replace(jwt_secret=SECRET))
    valid = jwt.encode({"exp": int(time.time()) + 60}, SECRET, "HS256")
    expired = jwt.encode({"exp": int(time.time()) - 60}, SECRET, "HS256")
    authorization = headers.get("authorization", f"Bearer {valid}")
    if authorization == "expired":
        authorization = f"Bearer {expired}"
    sent = {"accept": "application/graphql-response+json"}
    if authorization is not None:
        sent["authorization"] = authorization
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.post("/graphql", json=body, headers=sent)
    assert response.status_code == status, response.text
    if code is None:
        assert "errors" not in response.json()
        return
    errors = response.json()["errors"]
    assert errors[0]["extensions"]["code"] == code
    assert errors[0]["message"]


PIPELINE = "subscription { pipeline { lastSequence } }"


async def connect_ws(server: Server, protocol: str) -> Any:
    ws = await websockets.connect(server.ws_url, subprotocols=[protocol])  # type: ignore[list-item]
    await ws.send('{"type": "connection_init"}')
    assert (await receive(ws))["type"] == "connection_ack"
    return ws


def start_message(protocol: str, sub_id: str, query: str) -> str:
    kind = "subscribe" if protocol == "graphql-transport-ws" else "start"
    return json.dumps({"id": sub_id, "type": kind, "payload": {"query": query}})


async def test_subscribing_and_unsubscribing_2000_times_leaves_the_hub_empty(
    materializer: Any, settings: Settings, server_factory: Any
) -> None:
    # Room for every subscription on one socket, and for results the test does not read.
    server = server_factory(settings.replace(ws_max_subscriptions=2000, ws_send_queue=10_000))
    gateway = state(server.server.config.app)  # type: ignore[union-attr]
    ws = await connect_ws(server, "graphql-transport-ws")
    for i in range(2000):
        query = PIPELINE if i % 2 else f"subscription Q{i % 7} {{ lowStock {{ sku }} }}"
        await ws.send(start_message("graphql-transport-ws", f"s{i}", query))
        if i % 3 == 0:
            await ws.send(json.dumps({"id": f"s{i}", "type": "complete"}))
    await until(lambda: gateway.hub.subscriber_count > 0)
    for i in range(2000):
        if i % 3:
            await ws.send(json.dumps({"id": f"s{i}", "type": "complete"}))
    await until(lambda: gateway.hub.stats() == {"groups": 0, "subscriptions": 0}, timeout=20)
    # Sockets that go away without unsubscribing release everything too.
    sockets = [await connect_ws(server, "graphql-ws") for _ in range(20)]
    for i, other in enumerate(sockets):
        await other.send(start_message("graphql-ws", "1", PIPELINE))
        await other.send(
            start_message(
                "graphql-ws", "2", f'subscription {{ stockLevels(sku: "{i}") {{ sku }} }}'
            )
        )
    await until(lambda: gateway.hub.subscriber_count == 40)
    for other in sockets:
        await other.close()
    await ws.close()
    await until(lambda: gateway.hub.stats() == {"groups": 0, "subscriptions": 0})
    await until(lambda: not gateway.connections)


async def test_stock_and_receivables_flow_through_graphql_and_rest(
    server: Server, materializer: Any, js: JetStreamContext
) -> None:
    today = dt.datetime.now(dt.UTC).date()
    events = [
        cloud_event(
            "product.updated",
            {
                "sku": "SKU-7",
                "name": "Gizmo",
                "category": "tools",
                "reorder_point": 10,
                "unit_cost": "2.50",
            },
        ),
        cloud_event(
            "stock.moved",
            {"sku": "SKU-7", "warehouse": "WH-A", "quantity_delta": 3, "reason": "receipt"},
        ),
        cloud_event(
            "invoice.issued",
            {
                "invoice_id": "INV-9",
                "customer_id": "C-9",
                "amount": "100.10",
                "issued_on": (today - dt.timedelta(days=50)).isoformat(),
                "due_date": (today - dt.timedelta(days=40)).isoformat(),
            },
        ),
        cloud_event(
            "payment.received", {"payment_id": "P-1", "invoice_id": "INV-9", "amount": "0.05"}
        ),
    ]
    sequence = await publish_events(js, *events)
    await materializer.wait_for_sequence(sequence)
    # As of the day the invoice was dated from: past midnight the server's today would
    # count one more day overdue.
    query = """query ($asOf: Date) {
      lowStock { sku warehouse onHand reorderPoint lowStock name }
      arAging(asOf: $asOf) { totalOutstanding openInvoices buckets { days31To60 total } }
      overdueInvoices(asOf: $asOf) { invoiceId balance paid daysOverdue bucket }
    }"""
    variables = {"asOf": today.isoformat()}
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.post("/graphql", json={"query": query, "variables": variables})
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        assert data["lowStock"] == [
            {
                "sku": "SKU-7",
                "warehouse": "WH-A",
                "onHand": 3,
                "reorderPoint": 10,
                "lowStock": True,
                "name": "Gizmo",
            }
        ]
        assert '"totalOutstanding":100.05' in response.text
        assert data["arAging"]["buckets"]["days31To60"] == 100.05
        assert data["overdueInvoices"] == [
            {
                "invoiceId": "INV-9",
                "balance": 100.05,
                "paid": 0.05,
                "daysOverdue": 40,
                "bucket": "31-60",
            }
        ]
        low = (await http.get("/query/inventory/low-stock")).json()
        assert [row["sku"] for row in low["data"]] == ["SKU-7"]
        overdue = (await http.get("/query/ar/overdue")).json()
        assert overdue["data"][0]["balance"] == 100.05
        assert overdue["execution_time_ms"] >= 0


async def test_events_deleted_from_the_stream_show_in_graphql_and_health(
    materializer_settings: Any,
    settings: Settings,
    server_factory: Any,
    js: JetStreamContext,
) -> None:
    from materializer.app import Materializer

    last = await publish_events(js, *(order("1.00", 1) for _ in range(6)))
    await js.delete_msg("PULSE_EVENTS", 2)
    await js.delete_msg("PULSE_EVENTS", 3)
    server = server_factory(settings)
    query = {
        "query": "{ pipeline { status reason eventsMissing gapCount"
        " gaps { fromSequence toSequence events detectedAt } } }"
    }
    async with (
        Materializer(materializer_settings) as running,
        httpx.AsyncClient(base_url=server.url) as http,
    ):
        await running.wait_for_sequence(last)
        pipeline = (await http.post("/graphql", json=query)).json()["data"]["pipeline"]
        health = await http.get("/health")

    assert pipeline["status"] == "degraded" and "2 events missing" in pipeline["reason"]
    assert (pipeline["eventsMissing"], pipeline["gapCount"]) == (2, 1)
    [gap] = pipeline["gaps"]
    assert (gap["fromSequence"], gap["toSequence"], gap["events"]) == (2, 3, 2)
    assert health.status_code == 200 and health.json()["status"] == "degraded"
    assert "2 events missing" in health.json()["reason"]
