"""GraphQL over SSE (graphql-sse, distinct connections) on a real uvicorn gateway."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from gateway.app import state
from gateway.settings import Settings
from tests.gateway.conftest import Canned, Serve, Server, until
from tests.gateway.test_security import SECRET, token

CLIENT = Path(__file__).parent / "sse"
LIVE = "subscription Live { pipeline { lastSequence lag } }"
QUERY = "query Once { pipeline { lastSequence } }"
SSE = {"accept": "text/event-stream"}


def node_client() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the graphql-sse client needs Node.js 20+")
    if not (CLIENT / "node_modules" / "graphql-sse").exists():
        pytest.fail("run `npm ci --prefix tests/gateway/sse` first (make setup does)")
    return node


async def start_client(
    url: str, operations: list[dict[str, Any]], bearer: str | None = None
) -> asyncio.subprocess.Process:
    args = [str(CLIENT / "client.mjs"), url + "/graphql", json.dumps(operations)]
    if bearer:
        args.append(bearer)
    return await asyncio.create_subprocess_exec(
        node_client(), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )


async def line(process: asyncio.subprocess.Process) -> dict[str, Any]:
    assert process.stdout is not None
    raw = await asyncio.wait_for(process.stdout.readline(), 15)
    assert raw, (await process.stderr.read()).decode() if process.stderr else "no output"
    value: dict[str, Any] = json.loads(raw)
    return value


def gateway_of(server: Server) -> Any:
    return state(server.server.config.app)  # type: ignore[union-attr]


@pytest.mark.slow
async def test_graphql_sse_client_gets_queries_and_live_updates_then_releases_them(
    settings: Settings, canned: Canned, server_factory: Any
) -> None:
    server = server_factory(settings)
    gateway = gateway_of(server)
    process = await start_client(
        server.url,
        [{"id": "live", "query": LIVE, "take": 2}, {"id": "once", "query": QUERY}],
    )
    events: list[dict[str, Any]] = []
    while not any(e["id"] == "live" for e in events):
        events.append(await line(process))
    await until(lambda: gateway.hub.subscriber_count == 1)
    canned.data["pipeline"] = {**canned.data["pipeline"], "last_sequence": 13, "lag": 2}
    await canned.notify(["pipeline"])
    while len(events) < 4:
        events.append(await line(process))
    assert await asyncio.wait_for(process.wait(), 15) == 0
    live = [e["value"] for e in events if e["id"] == "live"]
    assert live == [
        {"data": {"pipeline": {"lastSequence": 12, "lag": 0}}},
        {"data": {"pipeline": {"lastSequence": 13, "lag": 2}}},
    ]
    once = [e for e in events if e["id"] == "once"]
    assert once == [
        {"id": "once", "kind": "next", "value": {"data": {"pipeline": {"lastSequence": 12}}}},
        {"id": "once", "kind": "complete"},
    ]
    # The client closed its streams: nothing stays subscribed.
    await until(lambda: gateway.hub.subscriber_count == 0 and gateway.sse_streams == 0)
    metrics = (await httpx.AsyncClient().get(server.url + "/metrics")).text
    assert 'gateway_graphql_operations_total{operation="Live",outcome="ok",transport="sse"}' in (
        metrics
    )


@pytest.mark.slow
async def test_graphql_sse_client_sees_request_errors_as_400(serve: Serve) -> None:
    server = serve(persisted_queries="trusted")
    process = await start_client(
        server.url,
        [
            {"id": "invalid", "query": "subscription { nope }"},
            {"id": "untrusted", "query": LIVE},
            {"id": "vars", "query": "subscription S($w: Int) { lowStock(warehouse: $w) { sku } }"},
        ],
    )
    events = [await line(process) for _ in range(3)]
    assert {e["id"] for e in events} == {"invalid", "untrusted", "vars"}
    assert all(e["kind"] == "error" and e["status"] == 400 for e in events), events
    await asyncio.wait_for(process.wait(), 15)


async def iter_events(response: httpx.Response) -> Any:
    """(event, data) pairs as they arrive; comments as ("", ":")."""
    buffer = ""
    async for chunk in response.aiter_text():
        buffer += chunk
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            if block.startswith(":"):
                yield ("", ":")
                continue
            fields = {}
            for part in block.split("\n"):
                name, _, value = part.partition(":")
                fields[name] = value.removeprefix(" ")
            yield (fields.get("event", ""), fields.get("data", ""))


async def read_events(response: httpx.Response, count: int) -> list[tuple[str, str]]:
    """The first `count` events of a stream."""
    found: list[tuple[str, str]] = []
    async for event in iter_events(response):
        found.append(event)
        if len(found) >= count:
            break
    return found


@contextlib.asynccontextmanager
async def live_stream(server: Any) -> AsyncIterator[httpx.Response]:
    """The LIVE subscription asked of a running gateway over SSE: its streaming response."""
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=10) as http,
        http.stream("POST", "/graphql", json={"query": LIVE}, headers=SSE) as response,
    ):
        yield response


@pytest.mark.slow
async def test_sse_and_websocket_subscribers_share_one_live_query_and_streams_keep_alive(
    serve: Serve,
) -> None:
    server = serve(ws_keepalive=0.2)
    gateway = gateway_of(server)
    async with (
        live_stream(server) as response,
        websockets.connect(server.ws_url, subprotocols=["graphql-transport-ws"]) as ws,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert "content-length" not in response.headers
        await ws.send(json.dumps({"type": "connection_init"}))
        await ws.recv()
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": LIVE}}))
        events = await read_events(response, 3)
        assert events[0] == ("next", '{"data":{"pipeline":{"lastSequence":12,"lag":0}}}')
        assert ("", ":") in events[1:]  # keep-alive comments while nothing changes
        assert len(gateway.hub.groups) == 1
        assert gateway.hub.subscriber_count == 2


@pytest.mark.slow
async def test_sse_needs_the_same_token_as_http_and_ends_when_it_expires(serve: Serve) -> None:
    server = serve(jwt_secret=SECRET, ws_keepalive=0.2)
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        refused = await http.post("/graphql", json={"query": LIVE}, headers=SSE)
        assert refused.status_code == 401
        short = token(exp=int(time.time()) + 1)
        headers = {**SSE, "authorization": f"Bearer {short}"}
        async with http.stream("POST", "/graphql", json={"query": LIVE}, headers=headers) as r:
            assert r.status_code == 200
            events = [e async for e in _until_complete(r)]
        assert events[0][0] == "next"
        assert "expired" in events[-2][1] and events[-1] == ("complete", "")


async def _until_complete(response: httpx.Response) -> Any:
    async for event in iter_events(response):
        yield event
        if event[0] == "complete":
            return


@pytest.mark.slow
async def test_sse_stream_limit_and_bad_requests_are_clear_errors(serve: Serve) -> None:
    server = serve(sse_max_streams=1)
    gateway = gateway_of(server)
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        async with http.stream("POST", "/graphql", json={"query": LIVE}, headers=SSE) as first:
            assert first.status_code == 200
            second = await http.post("/graphql", json={"query": LIVE}, headers=SSE)
            assert second.status_code == 503 and "GATEWAY_SSE_MAX_STREAMS" in second.text
        await until(lambda: gateway.sse_streams == 0)
        for content, content_type, status in [
            (b"", "application/json", 400),
            (b"{", "application/json", 400),
            (b"[]", "application/json", 400),
            (b'{"query": 5}', "application/json", 400),
            (b'{"query": "subscription { pipeline { lag } }"}', "text/plain", 415),
            (b'{"query": "' + b"x" * 5_000_000 + b'"}', "application/json", 413),
        ]:
            response = await http.post(
                "/graphql", content=content, headers={**SSE, "content-type": content_type}
            )
            assert response.status_code == status, content[:40]
        get = await http.get("/graphql", params={"query": QUERY}, headers=SSE)
        assert get.status_code == 200
        assert get.text == (
            'event: next\ndata: {"data":{"pipeline":{"lastSequence":12}}}\n\n'
            "event: complete\ndata:\n\n"
        )
        await until(lambda: gateway.hub.subscriber_count == 0 and gateway.sse_streams == 0)


@pytest.mark.slow
async def test_open_streams_do_not_keep_the_server_from_stopping(serve: Serve) -> None:
    server = serve(request_timeout=1.0)
    gateway = gateway_of(server)
    async with live_stream(server) as response:
        assert (await read_events(response, 1))[0][0] == "next"
        started = time.monotonic()
        await asyncio.to_thread(server.stop)
        assert server.thread is not None and not server.thread.is_alive()
        assert time.monotonic() - started < 8
    assert gateway.hub.subscriber_count == 0 and gateway.sse_streams == 0


@pytest.mark.parametrize(
    ("accept", "stream"),
    [
        ("text/event-stream", True),
        ("text/event-stream, */*;q=0.1", True),
        ("TEXT/EVENT-STREAM", True),
        ("application/json, text/event-stream", False),
        ("text/event-stream, application/graphql-response+json", False),
        ("application/json;q=0, text/event-stream", True),
        ("text/event-stream;q=0", False),
        ("*/*", False),
        ("", False),
        ("text/event-streamx", False),
    ],
)
def test_only_clients_asking_for_an_event_stream_alone_get_one(accept: str, stream: bool) -> None:
    from gateway.graphql_http import wants_event_stream

    assert wants_event_stream(accept) is stream


async def test_a_stream_too_far_behind_is_ended_not_buffered() -> None:
    from gateway.sse import _Sink

    sink = _Sink(2)
    sink.push('{"data":1}}')
    assert sink.queue.get_nowait() == b'event: next\ndata: {"data":1}\n\n'
    for n in range(5):
        sink.push('{"data":' + str(n) + "}}")
    assert sink.overflowed
    assert sink.queue.qsize() == 1 and sink.queue.get_nowait() is None
    sink.push('{"data":9}}')
    assert sink.queue.empty()
