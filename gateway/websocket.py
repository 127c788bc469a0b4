"""GraphQL over WebSocket: `graphql-transport-ws` and the legacy `graphql-ws`, on Starlette.

Written here rather than taken from strawberry because live results must be shared: a
connection only parses messages and queues frames; executions and encoding happen once
per group in the hub (gateway.live).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

import msgspec
from graphql import OperationType
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from gateway.errors import Unauthorized
from gateway.execution import encoder, result_payload
from gateway.live import Subscriber, frame_prefix
from gateway.schema import Context
from gateway.security import origin_allowed, scope_of

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger("gateway.websocket")

TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"
PROTOCOLS = (TRANSPORT_WS, LEGACY_WS)

_variables_encoder = msgspec.json.Encoder(order="sorted")


class _Close(Exception):
    """Close the socket with this code and reason."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason[:120]  # close reasons must fit in 123 bytes


class Connection:
    """One WebSocket: a reader (this task), a writer task and its subscriptions."""

    def __init__(self, websocket: WebSocket, protocol: str, gateway: Gateway) -> None:
        self.ws = websocket
        self.protocol = protocol
        self.gateway = gateway
        self.legacy = protocol == LEGACY_WS
        self.queue: asyncio.Queue[str | _Close] = asyncio.Queue(gateway.settings.ws_send_queue)
        self.subscriptions: dict[str, Subscriber] = {}
        self.initialised = False
        self.acknowledged = False
        self.claims: dict[str, Any] = {}
        self.last_seen = time.monotonic()
        self.closing = False
        #: When the frame being written now was handed to the server (None: idle). A
        #: write only waits while the socket's buffers are full, i.e. the peer is not reading.
        self.sending_since: float | None = None
        self.dropped = False
        self._writer: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None

    # -- sending --------------------------------------------------------------------------

    def push(self, text: str) -> None:
        """Queue a frame; a client too slow to keep up is dropped rather than buffered forever."""
        if self.closing:
            return
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            self.drop(f"client too slow: {self.queue.maxsize} frames queued")

    def send_json(self, message: dict[str, Any]) -> None:
        """Queue one protocol message."""
        self.push(encoder.encode(message).decode())

    def close(self, code: int, reason: str) -> None:
        """Close after the frames already queued."""
        if self.closing:
            return
        self.closing = True
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(_Close(code, reason))
            return
        # The queue is full: drop what is queued, the client is gone or stuck anyway.
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(_Close(code, reason))

    async def writer(self) -> None:
        """Send queued frames in order until a close is queued."""
        while True:
            item = await self.queue.get()
            self.sending_since = time.monotonic()
            if isinstance(item, _Close):
                with contextlib.suppress(Exception):
                    await self.ws.close(item.code, item.reason)
                self.sending_since = None
                return
            try:
                await self.ws.send_text(item)
            except Exception:
                self.closing = True
                return
            self.sending_since = None

    def check_writes(self, now: float, timeout: float) -> None:
        """Called by the write watchdog: drop a socket whose current frame waits too long."""
        since = self.sending_since
        if since is not None and now - since > timeout:
            self.drop(f"client too slow: a frame waited more than {timeout:g} s")

    def drop(self, reason: str) -> None:
        """Give up on a client that does not read: free its subscriptions and frames now,
        close with 1008 if the close frame can still be written, else abort the socket.

        A send only blocks while the server's write buffer is above its high-water mark
        (uvicorn pauses writing), and `transport.close()` waits for that buffer to drain,
        which never happens when the peer stops reading: without an abort the socket, its
        buffers and the ASGI task would stay forever.
        """
        if self.dropped:
            return
        self.dropped = self.closing = True
        log.info("dropping a WebSocket client: %s", reason)
        self.gateway.metrics.ws_dropped.inc()
        self.release()
        while not self.queue.empty():
            self.queue.get_nowait()
        if self._writer is not None:
            self._writer.cancel()
        self._closer = asyncio.create_task(self._close_or_abort(1008, reason))

    async def _close_or_abort(self, code: int, reason: str) -> None:
        grace = self.gateway.settings.ws_send_timeout
        try:
            await asyncio.wait_for(self.ws.close(code, reason[:120]), grace)
            return
        except TimeoutError:
            pass
        except Exception:  # already closed or the peer went away meanwhile
            return
        transport = _transport_of(self.ws)
        if transport is not None:
            transport.abort()

    def release(self) -> None:
        """Unsubscribe everything this socket holds (idempotent)."""
        for subscriber in self.subscriptions.values():
            self.gateway.hub.unsubscribe(subscriber)
        self.subscriptions.clear()

    def keepalive(self, now: float, interval: float) -> None:
        """Called by the keep-alive timer: ping, drop silent sockets and expired tokens."""
        expires = self.claims.get("exp")
        if isinstance(expires, int | float) and expires < time.time():
            self.close(4403, "Forbidden: the token has expired")
            return
        if self.legacy:
            if self.acknowledged:
                self.send_json({"type": "ka"})
            return
        if now - self.last_seen > 2 * interval:
            self.close(4408, "keep-alive timeout: no pong")
            return
        self.push('{"type":"ping"}')

    # -- receiving ------------------------------------------------------------------------

    async def serve(self) -> None:
        """Read messages until the socket closes, then release every subscription."""
        writer = self._writer = asyncio.create_task(self.writer())
        init_timer = asyncio.get_running_loop().call_later(
            self.gateway.settings.ws_init_timeout, self._init_timeout
        )
        try:
            while True:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                self.last_seen = time.monotonic()
                text = message.get("text")
                if text is None and message.get("bytes") is not None:
                    text = message["bytes"].decode("utf-8", "replace")
                try:
                    await self.handle(text or "")
                except _Close as exc:
                    self.close(exc.code, exc.reason)
        except WebSocketDisconnect:
            pass
        finally:
            init_timer.cancel()
            self.release()
            if not writer.done():
                self.close(1000, "bye")
                try:
                    await asyncio.wait_for(writer, 1.0)
                except (TimeoutError, asyncio.CancelledError):
                    writer.cancel()
            if self._closer is not None and not self._closer.done():
                with contextlib.suppress(Exception):
                    await self._closer
            self._writer = self._closer = None

    def _init_timeout(self) -> None:
        if not self.acknowledged:
            self.close(4408, "Connection initialisation timeout")

    async def handle(self, text: str) -> None:
        """Dispatch one client message."""
        try:
            message = msgspec.json.decode(text)
        except msgspec.DecodeError:
            raise _Close(4400, "Invalid message received: not JSON") from None
        except RecursionError:
            raise _Close(4400, "Invalid message received: nested too deeply") from None
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            raise _Close(4400, "Invalid message received: no type")
        kind = message["type"]
        if kind == "connection_init":
            await self._init(message.get("payload"))
        elif kind == "ping" and not self.legacy:
            self.send_json({"type": "pong"})
        elif kind == "pong" and not self.legacy:
            pass
        elif kind == ("start" if self.legacy else "subscribe"):
            await self._start(message)
        elif kind == ("stop" if self.legacy else "complete"):
            self._stop(message.get("id"), echo=self.legacy)
        elif kind == "connection_terminate" and self.legacy:
            raise _Close(1000, "terminated")
        else:
            raise _Close(4400, f"Invalid message received: unknown type {kind!r}")

    async def _init(self, payload: Any) -> None:
        if self.initialised:
            raise _Close(4429, "Too many initialisation requests")
        self.initialised = True
        try:
            self.claims = await self.gateway.auth.from_init_payload(payload)
        except Unauthorized as exc:
            if self.legacy:
                self.send_json({"type": "connection_error", "payload": {"message": exc.message}})
            code = 4401 if type(exc) is Unauthorized else exc.ws_close
            raise _Close(
                code, f"{'Unauthorized' if code == 4401 else 'Forbidden'}: {exc.message}"
            ) from None
        self.acknowledged = True
        self.send_json({"type": "connection_ack"})
        if self.legacy:
            self.send_json({"type": "ka"})

    async def _start(self, message: dict[str, Any]) -> None:
        if self.closing:
            return  # closing or dropped: nothing new may subscribe
        if not self.acknowledged:
            raise _Close(4401, "Unauthorized: send connection_init first")
        sub_id, payload = message.get("id"), message.get("payload")
        if not isinstance(sub_id, str) or not sub_id or not isinstance(payload, dict):
            raise _Close(4400, "Invalid message received: subscribe needs an id and a payload")
        if sub_id in self.subscriptions:
            raise _Close(4409, f"Subscriber for {sub_id} already exists")
        limit = self.gateway.settings.ws_max_subscriptions
        if len(self.subscriptions) >= limit:
            self._errors(sub_id, [_bad(f"too many subscriptions on this socket (at most {limit})")])
            return
        query, variables = payload.get("query"), payload.get("variables")
        operation_name = payload.get("operationName")
        if (
            not isinstance(query, str)
            or not (variables is None or isinstance(variables, dict))
            or not (operation_name is None or isinstance(operation_name, str))
        ):
            self._errors(sub_id, [_bad("payload needs a string query, an object of variables")])
            return
        executor = self.gateway.executor
        prepared = executor.prepare(query)
        if prepared.errors:
            self._errors(sub_id, prepared.errors)
            return
        operation = prepared.operation(operation_name)
        if isinstance(operation, dict):
            self._errors(sub_id, [operation])
            return
        coerced = executor.coerce(operation, variables)
        if isinstance(coerced, list):
            self._errors(sub_id, coerced)
            return
        context = Context(self.gateway.upstream, self.gateway.versions, self.claims)
        if operation.kind is not OperationType.SUBSCRIPTION or operation.as_query is None:
            await self._run_once(sub_id, prepared.document, context, variables, operation_name)
            return
        subscriber = Subscriber(
            self, sub_id, frame_prefix(sub_id, "data" if self.legacy else "next")
        )
        self.subscriptions[sub_id] = subscriber
        key = (query, operation_name, _variables_encoder.encode(variables), scope_of(self.claims))
        self.gateway.hub.subscribe(
            subscriber,
            key,
            operation.as_query,
            operation_name,
            variables,
            operation.root_fields[0].name.value,
            executor.root_arguments(operation, coerced),
            context,
        )

    async def _run_once(
        self, sub_id: str, document: Any, context: Context, variables: Any, name: Any
    ) -> None:
        """Queries (and no mutations exist) over the socket: one result, then complete."""
        result = await self.gateway.executor.execute(document, context, variables, name)
        self.send_json(
            {
                "id": sub_id,
                "type": "data" if self.legacy else "next",
                "payload": result_payload(result),
            }
        )
        self.send_json({"id": sub_id, "type": "complete"})

    def _stop(self, sub_id: Any, echo: bool) -> None:
        subscriber = self.subscriptions.pop(sub_id, None) if isinstance(sub_id, str) else None
        if subscriber is not None:
            self.gateway.hub.unsubscribe(subscriber)
        if echo and isinstance(sub_id, str):
            self.send_json({"id": sub_id, "type": "complete"})

    def _errors(self, sub_id: str, errors: list[dict[str, Any]]) -> None:
        if self.legacy:
            self.send_json({"id": sub_id, "type": "error", "payload": errors[0]})
        else:
            self.send_json({"id": sub_id, "type": "error", "payload": errors})


def _transport_of(websocket: WebSocket) -> Any:
    """The server's transport behind a WebSocket, when the server exposes it.

    ASGI has no "abort"; uvicorn's WebSocket protocols are the ASGI `receive` callable's
    owner and keep the asyncio transport as `.transport`.
    """
    owner = getattr(websocket._receive, "__self__", None)
    transport = getattr(owner, "transport", None)
    return transport if callable(getattr(transport, "abort", None)) else None


def _bad(message: str) -> dict[str, Any]:
    return {"message": message, "extensions": {"code": "BAD_REQUEST"}}


async def graphql_ws_endpoint(websocket: WebSocket) -> None:
    """`/graphql` WebSocket: negotiate the protocol, check the origin, serve the connection."""
    gateway: Gateway = websocket.app.state.gateway
    offered = websocket.scope.get("subprotocols") or []
    protocol = next((p for p in offered if p in PROTOCOLS), None)
    await websocket.accept(subprotocol=protocol)
    if protocol is None:
        await websocket.close(4406, "Subprotocol not acceptable: use graphql-transport-ws")
        return
    origin = websocket.headers.get("origin")
    if not origin_allowed(gateway.settings, origin, websocket.headers.get("host")):
        await websocket.close(4403, f"Forbidden: origin {origin} is not allowed")
        return
    connection = Connection(websocket, protocol, gateway)
    gateway.connections.add(connection)
    gateway.metrics.connections.inc()
    try:
        await connection.serve()
    finally:
        gateway.connections.discard(connection)
        gateway.metrics.connections.dec()
        if websocket.application_state is WebSocketState.CONNECTED and not connection.closing:
            with contextlib.suppress(Exception):
                await websocket.close()
