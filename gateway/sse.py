"""GraphQL over Server-Sent Events, the graphql-sse protocol's distinct connections mode.

A client that cannot open WebSockets (proxies, corporate networks) sends the operation
as an ordinary GraphQL HTTP request with `Accept: text/event-stream` and reads the
answer as an event stream: `event: next` with one execution result per message, then
`event: complete` (docs/GATEWAY.md "GraphQL over SSE"). Subscriptions are the same live
queries as over WebSocket: the stream joins the hub's group for its document, variables
and auth scope, so it shares executions and payloads with WebSocket subscribers. Auth is
the HTTP `Authorization` header; persisted queries, trusted documents and the cost and
size limits apply as to any HTTP request. Errors found before the stream starts are
answered as plain GraphQL-over-HTTP responses, as the protocol asks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

import msgspec
from graphql import OperationType
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from gateway.errors import BadRequest, GatewayError, gateway_error_body, request_error
from gateway.execution import encoder
from gateway.graphql_http import JSON, error_response, read_params
from gateway.live import Subscriber
from gateway.metrics import Observation
from gateway.persisted import PersistedQueryError
from gateway.schema import Context
from gateway.security import scope_of

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger("gateway.sse")

EVENT_STREAM = "text/event-stream"
_variables_encoder = msgspec.json.Encoder(order="sorted")
_COMPLETE = b"event: complete\ndata:\n\n"


def next_event(payload: bytes | str) -> bytes:
    """One `next` event carrying an execution result (JSON has no raw newlines)."""
    data = payload.encode() if isinstance(payload, str) else payload
    return b"event: next\ndata: " + data + b"\n\n"


class _Sink:
    """A hub sink for one stream: live payloads go to a bounded queue.

    The hub pushes `prefix + payload + "}"` (a WebSocket frame); with an empty prefix the
    payload is the text without its last character.
    """

    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(size)
        self.overflowed = False

    def push(self, text: str) -> None:
        if self.overflowed:
            return
        try:
            self.queue.put_nowait(next_event(text[:-1]))
        except asyncio.QueueFull:
            # A client this far behind is dropped (as over WebSocket), not buffered forever.
            self.overflowed = True
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(None)


class EventStream(Response):
    """The streaming answer: events from `source` until the client leaves or it completes."""

    media_type = EVENT_STREAM

    def __init__(self, gateway: Gateway, first: bytes | None, sink: _Sink | None) -> None:
        # Not Response.__init__: it would declare a Content-Length for the empty body.
        self.status_code = 200
        self.background = None
        self.raw_headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
        ]
        self.gateway = gateway
        self.first = first
        self.sink = sink
        self.subscriber: Subscriber | None = None
        self.expires: Any = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Send the events, keep the stream alive with comments, release on disconnect."""
        settings = self.gateway.settings
        timeout = settings.ws_send_timeout

        async def write(data: bytes, more: bool = True) -> None:
            await asyncio.wait_for(
                send({"type": "http.response.body", "body": data, "more_body": more}), timeout
            )

        async def disconnected() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        watcher = asyncio.create_task(disconnected())
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            if self.sink is None:
                await write(self.first or b"")
                await write(_COMPLETE, more=False)
                return
            await self._stream(write, watcher, settings.ws_keepalive)
        except (TimeoutError, OSError):
            log.info("dropping an SSE client that does not read its events")
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watcher
            if self.subscriber is not None:
                self.gateway.hub.unsubscribe(self.subscriber)
            self.gateway.sse_streams -= 1
            self.gateway.metrics.sse_streams.dec()

    async def _stream(self, write: Any, watcher: asyncio.Task[None], keepalive: float) -> None:
        assert self.sink is not None
        queue = self.sink.queue
        while not watcher.done():
            getter = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait(
                {getter, watcher}, timeout=keepalive, return_when=asyncio.FIRST_COMPLETED
            )
            if getter not in done:
                getter.cancel()
                if watcher in done:
                    return
                if isinstance(self.expires, int | float) and self.expires < time.time():
                    error = request_error("the token has expired", "UNAUTHENTICATED")
                    await write(next_event(encoder.encode({"errors": [error]})))
                    await write(_COMPLETE, more=False)
                    return
                await write(b":\n\n")  # a comment: keeps proxies from closing an idle stream
                continue
            event = getter.result()
            if event is None:
                self.gateway.metrics.ws_dropped.inc()
                return
            await write(event)


async def sse_endpoint(request: Request) -> Response:
    """`/graphql` with `Accept: text/event-stream` (graphql-sse, distinct connections)."""
    gateway: Gateway = request.app.state.gateway
    settings = gateway.settings
    if request.method not in ("GET", "POST"):
        return error_response(BadRequest("GraphQL over SSE takes GET or POST"), JSON)
    try:
        claims = await gateway.auth.from_header(request.headers.get("authorization"))
        params = await read_params(request)
        query = gateway.persisted.resolve(params.query, params.extensions)
    except PersistedQueryError as exc:
        return _errors([request_error(exc.message, exc.code)])
    except GatewayError as exc:
        return error_response(exc, JSON)
    observed = Observation(gateway.metrics, "sse", settings.metrics_max_operations)
    started = time.perf_counter()
    attributes = {"http.request.method": request.method, "url.path": "/graphql"}
    try:
        with gateway.tracing.span("graphql-sse", request.headers, True, attributes):
            return await _start(gateway, request, params, query, claims, observed)
    finally:
        observed.finish(time.perf_counter() - started)


async def _start(
    gateway: Gateway,
    request: Request,
    params: Any,
    query: str,
    claims: dict[str, Any],
    observed: Observation,
) -> Response:
    executor = gateway.executor
    prepared = executor.prepare(query)
    kind = prepared.kind(params.operation_name)
    if request.method == "GET" and kind not in (
        None,
        OperationType.QUERY,
        OperationType.SUBSCRIPTION,
    ):
        observed.error()
        body = {"errors": [{"message": "Only queries and subscriptions can be sent with GET."}]}
        return Response(encoder.encode(body), 405, {"Allow": "POST"}, JSON)
    if prepared.errors:
        observed.error()
        return _errors(prepared.errors)
    gateway.persisted.register(query, params.extensions)
    operation = prepared.operation(params.operation_name)
    if isinstance(operation, dict):
        observed.error()
        return _errors([operation])
    observed.name(operation.node.name.value if operation.node.name else None)
    coerced = executor.coerce(operation, params.variables)
    if isinstance(coerced, list):
        observed.error()
        return _errors(coerced)
    if gateway.sse_streams >= gateway.settings.sse_max_streams:
        observed.error()
        limit = gateway.settings.sse_max_streams
        body = gateway_error_body(
            GatewayError(f"too many event streams open (GATEWAY_SSE_MAX_STREAMS={limit})")
        )
        return Response(encoder.encode(body), 503, {"Retry-After": "5"}, JSON)
    context = Context(gateway.upstream, gateway.versions, claims)
    if operation.kind is not OperationType.SUBSCRIPTION or operation.as_query is None:
        answer = await gateway.answerer.answer_request(
            prepared, operation, coerced, context, params
        )
        if not answer.cacheable:
            observed.error()
        gateway.sse_streams += 1
        gateway.metrics.sse_streams.inc()
        return EventStream(gateway, next_event(answer.body), None)
    sink = _Sink(gateway.settings.ws_send_queue)
    stream = EventStream(gateway, None, sink)
    stream.expires = claims.get("exp")
    subscriber = Subscriber(sink, "", "")
    key = (
        query,
        params.operation_name,
        _variables_encoder.encode(params.variables),
        scope_of(claims),
    )
    gateway.sse_streams += 1
    gateway.metrics.sse_streams.inc()
    stream.subscriber = subscriber
    gateway.hub.subscribe(
        subscriber,
        key,
        operation.as_query,
        params.operation_name,
        params.variables,
        operation.root_fields[0].name.value,
        executor.root_arguments(operation, coerced),
        context,
    )
    return stream


def _errors(errors: list[dict[str, Any]]) -> Response:
    """A request error before the stream starts: a GraphQL-over-HTTP 400 (graphql-sse)."""
    return Response(encoder.encode({"errors": errors}), 400, media_type=JSON)
