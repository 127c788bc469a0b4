"""Live queries over real WebSockets (uvicorn on a free port), both protocols."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from gateway.app import state
from gateway.live import BURST_SECONDS
from gateway.settings import Settings
from tests.clock import clear_of_the_hour
from tests.gateway.conftest import Canned, Serve, Server, until

LOW_STOCK = "subscription { lowStock { sku onHand } }"
PIPELINE = "subscription { pipeline { lastSequence } }"
AR_AGING = "subscription { arAging { openInvoices } }"


async def receive(ws: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    """The next message that is not a keep-alive."""
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if message["type"] not in ("ka", "ping", "pong"):
            return message


async def connect(server: Server, protocol: str, payload: Any = None) -> ClientConnection:
    ws = await websockets.connect(server.ws_url, subprotocols=[protocol])  # type: ignore[list-item]
    init: dict[str, Any] = {"type": "connection_init"}
    if payload is not None:
        init["payload"] = payload
    await ws.send(json.dumps(init))
    assert (await receive(ws))["type"] == "connection_ack"
    return ws


async def close_code(ws: ClientConnection, *, skip_messages: bool = False) -> int | None:
    """Wait for the server to close `ws` and return its close code.

    A message before the close fails the test unless `skip_messages` lets it pass.
    """
    with pytest.raises(websockets.ConnectionClosed):
        while True:
            message = await asyncio.wait_for(ws.recv(), 5)
            assert skip_messages, f"expected the socket to close, got {message!r}"
    return ws.close_code


SocketWith = Callable[..., Awaitable[ClientConnection]]


@pytest.fixture
def socket_with(serve: Serve) -> SocketWith:
    """Opens a `graphql-transport-ws` socket, acknowledged, to a gateway on changed settings."""

    async def open_socket(**changes: Any) -> ClientConnection:
        return await connect(serve(**changes), "graphql-transport-ws")

    return open_socket


def start_message(protocol: str, sub_id: str, query: str, variables: Any = None) -> str:
    kind = "subscribe" if protocol == "graphql-transport-ws" else "start"
    payload = {"query": query, "variables": variables}
    return json.dumps({"id": sub_id, "type": kind, "payload": payload})


@pytest.fixture
def server(settings: Settings, canned: Canned, server_factory: Any) -> Server:
    """A real uvicorn gateway next to the canned query service."""
    return server_factory(settings)


@pytest.mark.parametrize(
    ("protocol", "result_type"), [("graphql-transport-ws", "next"), ("graphql-ws", "data")]
)
async def test_live_query_sends_current_result_then_changes_only_when_touched(
    server: Server, canned: Canned, protocol: str, result_type: str
) -> None:
    ws = await connect(server, protocol)
    await ws.send(start_message(protocol, "a", LOW_STOCK))
    first = await receive(ws)
    assert first == {
        "id": "a",
        "type": result_type,
        "payload": {"data": {"lowStock": [{"sku": "SKU-1", "onHand": 2}]}},
    }
    # A sales change does not touch stock: nothing is sent.
    await canned.notify(["sales", "pipeline"], sales_hours=["2026-11-25T10:00:00+00:00"])
    with pytest.raises(TimeoutError):
        await receive(ws, timeout=0.5)
    # A stock change that leaves the result as it was: still nothing.
    await canned.notify(["stock", "pipeline"], skus=["SKU-1"], warehouses=["WH-1"])
    with pytest.raises(TimeoutError):
        await receive(ws, timeout=0.5)
    # A stock change that changes the result: the new result arrives.
    canned.data["low_stock"] = [{**canned.data["low_stock"][0], "on_hand": 1}]
    await canned.notify(["stock", "pipeline"], skus=["SKU-1"], warehouses=["WH-1"])
    update = await receive(ws)
    assert update["payload"]["data"]["lowStock"] == [{"sku": "SKU-1", "onHand": 1}]
    await ws.close()


async def test_subscribers_of_the_same_query_share_one_execution(
    server: Server, canned: Canned
) -> None:
    sockets = [await connect(server, "graphql-transport-ws") for _ in range(5)]
    for i, ws in enumerate(sockets):
        await ws.send(start_message("graphql-transport-ws", f"s{i}", PIPELINE))
        assert (await receive(ws))["id"] == f"s{i}"
    gateway = state(server.server.config.app)  # type: ignore[union-attr]
    assert gateway.hub.stats() == {"groups": 1, "subscriptions": 5}
    before = sum(1 for n, _ in canned.requests if n == "pipeline")
    canned.data["pipeline"] = {**canned.data["pipeline"], "last_sequence": 13}
    await canned.notify(["pipeline"])
    for i, ws in enumerate(sockets):
        message = await receive(ws)
        assert message["id"] == f"s{i}"
        assert message["payload"]["data"]["pipeline"]["lastSequence"] == 13
    assert sum(1 for n, _ in canned.requests if n == "pipeline") - before == 1
    for ws in sockets:
        await ws.close()


async def test_burst_of_notices_is_coalesced(server: Server, canned: Canned) -> None:
    ws = await connect(server, "graphql-transport-ws")
    await ws.send(start_message("graphql-transport-ws", "p", PIPELINE))
    await receive(ws)
    before = sum(1 for n, _ in canned.requests if n == "pipeline")
    canned.data["pipeline"] = {**canned.data["pipeline"], "last_sequence": 50}
    # The whole burst is written at once, so how many refreshes it causes depends on the
    # coalescing and not on how fast this machine publishes 50 separate flushes.
    for _ in range(50):
        await canned.notify(["pipeline"], flush=False)
    await canned.nc.flush()
    message = await receive(ws)
    assert message["payload"]["data"]["pipeline"]["lastSequence"] == 50
    await asyncio.sleep(0.3)
    assert sum(1 for n, _ in canned.requests if n == "pipeline") - before < 10
    await ws.close()


async def watch_pipeline(server: Server) -> ClientConnection:
    """A socket subscribed to ``PIPELINE``, its first result read."""
    ws = await connect(server, "graphql-transport-ws")
    await ws.send(start_message("graphql-transport-ws", "p", PIPELINE))
    await receive(ws)
    return ws


async def change_pipeline(canned: Canned, ws: ClientConnection, last_sequence: int) -> int:
    """Change the pipeline, send one notice; the ``lastSequence`` the socket gets next."""
    canned.data["pipeline"] = {**canned.data["pipeline"], "last_sequence": last_sequence}
    await canned.notify(["pipeline"])
    return int((await receive(ws))["payload"]["data"]["pipeline"]["lastSequence"])


async def test_a_lone_notice_is_refreshed_without_waiting_for_the_window(
    serve: Serve, canned: Canned
) -> None:
    # A window far longer than any refresh (and than ``receive`` waits): the lone
    # change must not wait for it.
    ws = await watch_pipeline(serve(live_coalesce_ms=60_000.0))
    assert await change_pipeline(canned, ws, 21) == 21
    await ws.close()


async def test_a_notice_right_after_a_refresh_waits_for_the_window(
    serve: Serve, canned: Canned
) -> None:
    loop = asyncio.get_running_loop()
    ws = await watch_pipeline(serve(live_coalesce_ms=1000.0))
    assert await change_pipeline(canned, ws, 31) == 31
    first = loop.time()
    assert await change_pipeline(canned, ws, 32) == 32
    # The first round ended before its frame arrived, so the second started at least a
    # window after ``first`` minus the frame's way here (a lower bound: never flaky).
    assert loop.time() - first >= 0.9
    await ws.close()


def change_aging(canned: Canned, open_invoices: int) -> None:
    canned.data["ar_aging"] = {**canned.data["ar_aging"], "open_invoices": open_invoices}


async def watch_aging(server: Server) -> ClientConnection:
    """A socket subscribed to ``AR_AGING``, its first result read."""
    ws = await connect(server, "graphql-transport-ws")
    await ws.send(start_message("graphql-transport-ws", "a", AR_AGING))
    await receive(ws)
    return ws


async def change_and_receive_aging(canned: Canned, ws: ClientConnection, open_invoices: int) -> int:
    """Change the open invoices, send one notice; the ``openInvoices`` the socket gets next."""
    change_aging(canned, open_invoices)
    await canned.notify(["receivables"])
    return int((await receive(ws))["payload"]["data"]["arAging"]["openInvoices"])


async def metrics_of(server: Server) -> str:
    """The gateway's /metrics text."""
    async with httpx.AsyncClient(base_url=server.url) as http:
        return (await http.get("/metrics")).text


async def test_a_slow_live_query_does_not_hold_back_a_fast_one(
    server: Server, canned: Canned
) -> None:
    ws = await watch_pipeline(server)
    await ws.send(start_message("graphql-transport-ws", "a", AR_AGING))
    assert (await receive(ws))["id"] == "a"
    canned.delays["ar_aging"] = 1.0  # under the 2 s query timeout
    change_aging(canned, 4)
    canned.data["pipeline"] = {**canned.data["pipeline"], "last_sequence": 41}
    await canned.notify(["receivables", "pipeline"])
    first = await receive(ws)
    # While `arAging` is still being refreshed, a second pipeline change goes out at
    # once instead of waiting for it: the frames come in this order whatever the speed.
    canned.data["pipeline"] = {**canned.data["pipeline"], "last_sequence": 42}
    await canned.notify(["pipeline"])
    second, third = await receive(ws), await receive(ws)
    assert [(m["id"], m["payload"]["data"]) for m in (first, second, third)] == [
        ("p", {"pipeline": {"lastSequence": 41}}),
        ("p", {"pipeline": {"lastSequence": 42}}),
        ("a", {"arAging": {"openInvoices": 4}}),
    ]
    await ws.close()


async def test_a_slow_live_query_rests_in_proportion_to_its_cost(
    serve: Serve, canned: Canned
) -> None:
    loop = asyncio.get_running_loop()
    server = serve(live_rest_ratio=3.0)
    ws = await watch_aging(server)
    canned.delays["ar_aging"] = 1.0  # under the 2 s query timeout
    assert await change_and_receive_aging(canned, ws, 4) == 4
    first = loop.time()
    assert await change_and_receive_aging(canned, ws, 5) == 5
    # At ratio 3 a group may refresh a quarter of the time. The first refresh took at
    # least 1 s, three quarters of it beyond what it earned meanwhile, against the
    # burst's credit: the rest earns back the difference at a quarter second a second,
    # and the second refresh takes 1 s again (with the 5 ms coalescing window alone
    # the gap would be about 1 s). A lower bound, so never flaky: the first frame's way
    # here may take up to 0.5 s.
    rest = (1.0 * 0.75 - BURST_SECONDS) / 0.25
    assert rest >= 1.5
    assert loop.time() - first >= rest + 1.0 - 0.5
    await ws.close()
    # Both refreshes after a change are counted, each at least the 0.5 s it took.
    metrics = await metrics_of(server)
    count = 'gateway_live_refresh_seconds_count{query="arAging"} 2.0'
    assert count in metrics
    assert 'gateway_live_refresh_seconds_bucket{le="0.25",query="arAging"} 0.0' in metrics


async def test_a_slow_refresh_within_the_burst_does_not_rest(serve: Serve, canned: Canned) -> None:
    # At ratio 100 a rest after every refresh would be 100 times it: 20 s after a 0.2 s
    # one. Within the burst there is none, so the next change arrives within
    # `receive`'s 5 s.
    ws = await watch_aging(serve(live_rest_ratio=100.0))
    canned.delays["ar_aging"] = 0.2
    assert BURST_SECONDS > 0.2
    for open_invoices in (7, 8):
        assert await change_and_receive_aging(canned, ws, open_invoices) == open_invoices
    await ws.close()


async def test_a_refresh_that_waited_on_the_materializer_is_charged_its_cpu_time(
    serve: Serve, canned: Canned
) -> None:
    # A reply that took 0.5 s to come but says 1 ms of the materializer's CPU: charged
    # the gateway's own time and that millisecond, well within the burst. Charged the
    # round trip, the rest at ratio 100 would be ~25 s, and the second change would not
    # arrive within `receive`'s 5 s.
    server = serve(live_rest_ratio=100.0)
    ws = await watch_aging(server)
    canned.delays["ar_aging"], canned.cpu["ar_aging"] = 0.5, 0.001
    assert BURST_SECONDS < 0.5
    for open_invoices in (11, 12, 13):
        assert await change_and_receive_aging(canned, ws, open_invoices) == open_invoices
    await ws.close()
    metrics = await metrics_of(server)
    # Three refreshes after a change: each took at least 0.5 s, none was charged 0.25 s.
    assert 'gateway_live_refresh_seconds_bucket{le="0.25",query="arAging"} 0.0' in metrics
    assert 'gateway_live_charged_seconds_count{query="arAging"} 3.0' in metrics
    assert 'gateway_live_charged_seconds_bucket{le="0.25",query="arAging"} 3.0' in metrics


@pytest.mark.parametrize("said", [1e9, -1.0, 1.0], ids=["huge", "negative", "all-of-it"])
async def test_a_reply_that_says_what_cannot_be_or_a_second_is_charged_so(
    serve: Serve, canned: Canned, said: float
) -> None:
    # More than the round trip, or below zero: the whole round trip is charged, as for
    # a materializer that says nothing; 1 s of a round trip of at least 1 s, as said.
    loop = asyncio.get_running_loop()
    server = serve(live_rest_ratio=3.0)
    ws = await watch_aging(server)
    canned.delays["ar_aging"], canned.cpu["ar_aging"] = 1.0, said
    assert await change_and_receive_aging(canned, ws, 21) == 21
    first = loop.time()
    assert await change_and_receive_aging(canned, ws, 22) == 22
    if said != 1.0:
        # Charged all of a refresh of t >= 1 s at ratio 3: the credit ends at most at
        # BURST + t / 4 - t, and the rest earns that back at a quarter second a second;
        # the first frame's way here may take up to 0.5 s (lower bounds: never flaky).
        rest = (1.0 * 0.75 - BURST_SECONDS) / 0.25
        assert loop.time() - first >= rest + 1.0 - 0.5
    await ws.close()
    metrics = await metrics_of(server)
    # Both refreshes after a change were charged at least a second.
    assert 'gateway_live_charged_seconds_count{query="arAging"} 2.0' in metrics
    assert 'gateway_live_charged_seconds_bucket{le="0.5",query="arAging"} 0.0' in metrics


async def test_a_failed_refresh_does_not_rest(serve: Serve, canned: Canned) -> None:
    # A rest of 100 times a 0.5 s refresh would be 50 s; after a failed one there is
    # none, so the next change arrives within `receive`'s 5 s.
    ws = await watch_aging(serve(live_rest_ratio=100.0))
    canned.delays["ar_aging"], canned.failing = 0.5, {"ar_aging"}
    await canned.notify(["receivables"])
    assert (await receive(ws))["payload"]["errors"]
    canned.failing = set()
    assert await change_and_receive_aging(canned, ws, 6) == 6
    await ws.close()


async def test_missed_notice_is_caught_by_the_heartbeat(server: Server, canned: Canned) -> None:
    ws = await connect(server, "graphql-transport-ws")
    await ws.send(start_message("graphql-transport-ws", "p", PIPELINE))
    await receive(ws)
    await canned.heartbeat()
    canned.data["pipeline"] = {**canned.data["pipeline"], "last_sequence": 77}
    canned.version += 3  # the change notices of these versions never arrived
    await canned.heartbeat()
    message = await receive(ws)
    assert message["payload"]["data"]["pipeline"]["lastSequence"] == 77
    await ws.close()


async def test_query_over_websocket_sends_result_and_complete(server: Server) -> None:
    ws = await connect(server, "graphql-transport-ws")
    await ws.send(start_message("graphql-transport-ws", "q", "{ pipeline { lag } }"))
    assert (await receive(ws))["payload"] == {"data": {"pipeline": {"lag": 0}}}
    assert await receive(ws) == {"id": "q", "type": "complete"}
    await ws.close()


async def test_invalid_subscription_gets_an_error_message(server: Server) -> None:
    ws = await connect(server, "graphql-transport-ws")
    await ws.send(start_message("graphql-transport-ws", "x", "subscription { nope }"))
    message = await receive(ws)
    assert message["type"] == "error" and message["id"] == "x"
    assert "nope" in message["payload"][0]["message"]
    await ws.send(
        start_message(
            "graphql-transport-ws",
            "y",
            "subscription { salesByHour(from: 1) { hour } pipeline { lag } }",
        )
    )
    message = await receive(ws)
    assert message["type"] == "error"
    await ws.close()


@pytest.mark.parametrize(
    ("messages", "code"),
    [
        (['{"type": "subscribe", "id": "1", "payload": {"query": "{ __typename }"}}'], 4401),
        (["not json"], 4400),
        (['{"type": "connection_init"}', '{"type": "connection_init"}'], 4429),
        (['{"type": "what"}'], 4400),
    ],
)
async def test_protocol_violations_close_with_the_spec_codes(
    server: Server, messages: list[str], code: int
) -> None:
    ws = await websockets.connect(server.ws_url, subprotocols=["graphql-transport-ws"])  # type: ignore[list-item]
    for message in messages:
        await ws.send(message)
    assert await close_code(ws, skip_messages=True) == code


async def test_duplicate_subscription_id_closes_4409(server: Server) -> None:
    ws = await connect(server, "graphql-transport-ws")
    await ws.send(start_message("graphql-transport-ws", "d", PIPELINE))
    await receive(ws)
    await ws.send(start_message("graphql-transport-ws", "d", PIPELINE))
    assert await close_code(ws, skip_messages=True) == 4409


async def test_missing_subprotocol_closes_4406(server: Server) -> None:
    ws = await websockets.connect(server.ws_url)
    assert await close_code(ws) == 4406


async def test_no_connection_init_closes_4408(
    settings: Settings, canned: Canned, server_factory: Any
) -> None:
    server = server_factory(settings.replace(ws_init_timeout=0.2))
    ws = await websockets.connect(server.ws_url, subprotocols=["graphql-transport-ws"])  # type: ignore[list-item]
    assert await close_code(ws) == 4408


async def test_server_pings_and_drops_a_socket_that_never_pongs(socket_with: SocketWith) -> None:
    ws = await socket_with(ws_keepalive=0.1)
    assert json.loads(await asyncio.wait_for(ws.recv(), 2)) == {"type": "ping"}
    assert await close_code(ws, skip_messages=True) == 4408


async def test_a_client_that_pongs_stays_connected(socket_with: SocketWith) -> None:
    ws = await socket_with(ws_keepalive=0.1)
    for _ in range(6):
        assert json.loads(await asyncio.wait_for(ws.recv(), 2)) == {"type": "ping"}
        await ws.send('{"type": "pong"}')
    await ws.send('{"type": "ping"}')
    while json.loads(await asyncio.wait_for(ws.recv(), 2))["type"] != "pong":
        await ws.send('{"type": "pong"}')
    await ws.close()


async def test_cross_origin_socket_is_refused_4403(server: Server) -> None:
    ws = await websockets.connect(
        server.ws_url,
        subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
        origin="http://evil.example",  # type: ignore[arg-type]
    )
    assert await close_code(ws) == 4403


async def test_subscriptions_beyond_the_per_socket_limit_get_an_error(
    socket_with: SocketWith,
) -> None:
    ws = await socket_with(ws_max_subscriptions=2)
    for sub_id in ("a", "b"):
        await ws.send(start_message("graphql-transport-ws", sub_id, PIPELINE))
        assert (await receive(ws))["type"] == "next"
    await ws.send(start_message("graphql-transport-ws", "c", PIPELINE))
    message = await receive(ws)
    assert message["type"] == "error" and message["id"] == "c"
    assert "at most 2" in message["payload"][0]["message"]
    await ws.send(json.dumps({"id": "a", "type": "complete"}))
    await ws.send(start_message("graphql-transport-ws", "c", PIPELINE))
    assert (await receive(ws))["type"] == "next"
    await ws.close()


async def test_turning_hour_refreshes_live_queries_with_default_windows(
    server: Server, canned: Canned
) -> None:
    gateway = state(server.server.config.app)  # type: ignore[union-attr]
    # The gateway's own refresh at the turn of the hour would count a request too.
    await clear_of_the_hour()
    ws = await connect(server, "graphql-transport-ws")
    await ws.send(
        start_message("graphql-transport-ws", "d", "subscription { salesByHour { hour } }")
    )
    await ws.send(
        start_message(
            "graphql-transport-ws",
            "f",
            # A fixed window in the past, never equal to the moving default one.
            'subscription { salesByHour(from: "2020-01-01T00:00:00Z", to: "2020-01-02T00:00:00Z") '
            "{ hour } }",
        )
    )
    assert {(await receive(ws))["id"], (await receive(ws))["id"]} == {"d", "f"}
    before = len(canned.requests)
    gateway.hub.on_hour()
    await until(lambda: len(canned.requests) > before)
    await asyncio.sleep(0.2)
    # Only the query whose window follows the clock ran again.
    assert len(canned.requests) == before + 1
    assert canned.requests[-1][1]["from"] != "2020-01-01T00:00:00+00:00"
    await ws.close()
