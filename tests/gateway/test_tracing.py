"""OpenTelemetry traces from a GraphQL request through NATS into the materializer.

A real gateway on uvicorn and a real in-process materializer share this process's
tracer provider, whose spans go to the SDK's in-memory exporter.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
import websockets
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.settings import Settings
from pulse_bi.tracing import Tracer, TracingUnavailable
from tests.gateway.conftest import until
from tests.tracing_support import named, span_exporter

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


@pytest.fixture
def spans() -> InMemorySpanExporter:
    """The process's span exporter, emptied."""
    return span_exporter()


Ask = Callable[..., Awaitable[httpx.Response]]


@pytest.fixture
def ask(settings: Settings, materializer: Any, server_factory: Any) -> Ask:
    """POSTs a query with a `traceparent` header to a real gateway, tracing on by default."""

    async def post(query: str, traceparent: str | bytes, tracing: bool = True) -> httpx.Response:
        server = server_factory(settings.replace(tracing=tracing))
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            return await http.post(
                "/graphql", json={"query": query}, headers={"traceparent": traceparent}
            )

    return post


@pytest.mark.slow
@pytest.mark.parametrize(
    "query",
    [
        "{ pipeline { lastSequence lag } }",
        # Costly enough to run on a worker thread: the trace must follow it there.
        "{ topProducts(limit: 2000) { sku name category units revenue } }",
    ],
)
async def test_a_request_is_traced_through_nats_into_the_materializer(
    ask: Ask, spans: Any, query: str
) -> None:
    response = await ask(query, TRACEPARENT)
    assert response.status_code == 200 and "errors" not in response.json(), response.text
    field = "pipeline" if "pipeline" in query else "top_products"

    def finished() -> bool:
        names = {s.name for s in spans.get_finished_spans()}
        return {"graphql", f"query {field}", f"answer {field}"} <= names

    await until(finished)
    request = named(spans, "graphql")
    nats = named(spans, f"query {field}")
    answer = named(spans, f"answer {field}")
    for span in (request, nats, answer):
        assert format(span.context.trace_id, "032x") == TRACE_ID
    assert request.parent is not None and format(request.parent.span_id, "016x") == PARENT_ID
    assert request.kind is trace.SpanKind.SERVER
    assert nats.parent is not None and nats.parent.span_id == request.context.span_id
    assert nats.kind is trace.SpanKind.CLIENT
    assert nats.attributes is not None
    assert nats.attributes["messaging.destination.name"].endswith(field)
    assert answer.parent is not None and answer.parent.span_id == nats.context.span_id
    assert answer.kind is trace.SpanKind.SERVER


@pytest.mark.slow
@pytest.mark.parametrize(
    "header", ["garbage", "00-" + "0" * 32 + "-" + "0" * 16 + "-01", "x" * 10_000, "00-é-é-01"]
)
async def test_a_bad_traceparent_starts_a_new_trace(ask: Ask, spans: Any, header: str) -> None:
    response = await ask("{ pipeline { lag } }", header.encode())
    assert response.status_code == 200 and "errors" not in response.json()
    await until(lambda: any(s.name == "answer pipeline" for s in spans.get_finished_spans()))
    request = named(spans, "graphql")
    assert request.parent is None
    assert named(spans, "answer pipeline").context.trace_id == request.context.trace_id


@pytest.mark.slow
async def test_nothing_is_traced_when_tracing_is_off(ask: Ask, spans: Any) -> None:
    response = await ask("{ pipeline { lag } }", TRACEPARENT, tracing=False)
    assert response.status_code == 200 and "errors" not in response.json()
    # The gateway sent no traceparent over NATS, so the materializer did not trace either.
    assert spans.get_finished_spans() == ()


def test_tracing_without_the_packages_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import pulse_bi.tracing

    monkeypatch.setattr(pulse_bi.tracing, "AVAILABLE", False)
    with pytest.raises(TracingUnavailable, match=r"pulse-bi\[tracing\]"):
        Tracer("gateway", True)
    assert pulse_bi.tracing.continued("materializer", {"traceparent": TRACEPARENT}) is None


@pytest.mark.slow
@pytest.mark.parametrize("operation", ["query", "subscription"])
async def test_a_websocket_operation_is_traced_through_nats(
    settings: Settings, materializer: Any, server_factory: Any, spans: Any, operation: str
) -> None:
    """The upgrade request's traceparent is continued by each operation on the socket."""
    server = server_factory(settings.replace(tracing=True))
    async with websockets.connect(
        server.ws_url,
        subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
        additional_headers={"traceparent": TRACEPARENT},
    ) as ws:
        await ws.send('{"type": "connection_init"}')
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        document = f"{operation} {{ pipeline {{ lastSequence }} }}"
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": document}}))
        while (message := json.loads(await ws.recv()))["type"] != "next":
            pass
        assert "errors" not in message["payload"], message

    def finished() -> bool:
        names = {s.name for s in spans.get_finished_spans()}
        return {"graphql websocket", "query pipeline", "answer pipeline"} <= names

    await until(finished)
    socket = named(spans, "graphql websocket")
    nats = named(spans, "query pipeline")
    assert format(socket.context.trace_id, "032x") == TRACE_ID
    assert socket.parent is not None and format(socket.parent.span_id, "016x") == PARENT_ID
    assert socket.attributes is not None
    assert socket.attributes["graphql.websocket.protocol"] == "graphql-transport-ws"
    assert nats.parent is not None and nats.parent.span_id == socket.context.span_id
