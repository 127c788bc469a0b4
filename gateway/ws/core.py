"""The connection core under both WebSocket protocols: sending, subscriptions, auth.

A `Connection` owns one socket: its send queue and writer task, slow-client drops, the
keep-alive and write watchdog hooks, `connection_init` authentication and the live
subscriptions it holds in the hub (gateway.live). It knows no message names: a
`Handler` per subprotocol (gateway/ws/transport_ws.py, gateway/ws/graphql_ws.py) reads
the protocol's messages, calls the core and frames what the core sends, as strawberry
splits `graphql_transport_ws/` and `graphql_ws/`.

Written here rather than taken from strawberry because live results must be shared: a
connection only parses messages and queues frames; executions and encoding happen once
per group in the hub.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec
from graphql import OperationType
from starlette.websockets import WebSocket, WebSocketDisconnect

from gateway.errors import Unauthorized
from gateway.execution import encoder, result_payload
from gateway.live import Subscriber, frame_prefix
from gateway.schema import Context
from gateway.security import scope_of

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger("gateway.ws")

_variables_encoder = msgspec.json.Encoder(order="sorted")


class Close(Exception):
    """Raised by a handler or the core: close the socket with this code and reason."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason[:120]  # close reasons must fit in 123 bytes


class Handler(ABC):
    """One WebSocket subprotocol: reads its messages, frames what the core sends.

    Stateless, one instance for all sockets: what a socket holds lives in its
    `Connection`, passed to every call (and no reference cycle keeps a closed socket
    waiting for the garbage collector).
    """

    #: The `Sec-WebSocket-Protocol` this handler speaks.
    protocol: ClassVar[str]
    #: Message type of a result frame.
    result_type: ClassVar[str]

    @abstractmethod
    async def handle(self, connection: Connection, kind: str, message: dict[str, Any]) -> None:
        """Act on one client message of type ``kind`` (other than `connection_init`, which
        the core answers); raise `Close` to end the socket."""

    @abstractmethod
    def acknowledge(self, connection: Connection) -> None:
        """Tell the client its `connection_init` was accepted."""

    @abstractmethod
    def refuse(self, connection: Connection, reason: str) -> None:
        """Tell the client its `connection_init` was refused, before the socket closes."""

    @abstractmethod
    def errors(self, connection: Connection, sub_id: str, errors: list[dict[str, Any]]) -> None:
        """Answer an operation that cannot run with its errors."""

    @abstractmethod
    def keepalive(self, connection: Connection, now: float, interval: float) -> None:
        """Keep-alive tick: ping, or close a socket silent for too long."""


def unknown_message(kind: str) -> Close:
    """The close for a message type the protocol does not have."""
    return Close(4400, f"Invalid message received: unknown type {kind!r}")


class Connection:
    """One WebSocket: a reader (this task), a writer task and its subscriptions."""

    def __init__(self, websocket: WebSocket, handler: Handler, gateway: Gateway) -> None:
        self.ws = websocket
        self.gateway = gateway
        self.handler = handler
        self.queue: asyncio.Queue[str | Close] = asyncio.Queue(gateway.settings.ws_send_queue)
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
            self.queue.put_nowait(Close(code, reason))
            return
        # The queue is full: drop what is queued, the client is gone or stuck anyway.
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(Close(code, reason))

    async def writer(self) -> None:
        """Send queued frames in order until a close is queued."""
        while True:
            item = await self.queue.get()
            self.sending_since = time.monotonic()
            if isinstance(item, Close):
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
        self.handler.keepalive(self, now, interval)

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
                except Close as exc:
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
        """Decode one client message and hand it to the protocol's handler."""
        try:
            message = msgspec.json.decode(text)
        except msgspec.DecodeError:
            raise Close(4400, "Invalid message received: not JSON") from None
        except RecursionError:
            raise Close(4400, "Invalid message received: nested too deeply") from None
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            raise Close(4400, "Invalid message received: no type")
        if message["type"] == "connection_init":  # both protocols open alike
            await self.init(message.get("payload"))
        else:
            await self.handler.handle(self, message["type"], message)

    async def init(self, payload: Any) -> None:
        """`connection_init`: authenticate once, then acknowledge (or refuse and close)."""
        if self.initialised:
            raise Close(4429, "Too many initialisation requests")
        self.initialised = True
        try:
            self.claims = await self.gateway.auth.from_init_payload(payload)
        except Unauthorized as exc:
            self.handler.refuse(self, exc.message)
            code = 4401 if type(exc) is Unauthorized else exc.ws_close
            raise Close(
                code, f"{'Unauthorized' if code == 4401 else 'Forbidden'}: {exc.message}"
            ) from None
        self.acknowledged = True
        self.handler.acknowledge(self)

    async def subscribe(self, message: dict[str, Any]) -> None:
        """Start an operation: a live query joins the hub, a query runs once."""
        if self.closing:
            return  # closing or dropped: nothing new may subscribe
        if not self.acknowledged:
            raise Close(4401, "Unauthorized: send connection_init first")
        sub_id, payload = message.get("id"), message.get("payload")
        if not isinstance(sub_id, str) or not sub_id or not isinstance(payload, dict):
            raise Close(4400, "Invalid message received: subscribe needs an id and a payload")
        if sub_id in self.subscriptions:
            raise Close(4409, f"Subscriber for {sub_id} already exists")
        limit = self.gateway.settings.ws_max_subscriptions
        if len(self.subscriptions) >= limit:
            self.handler.errors(
                self, sub_id, [_bad(f"too many subscriptions on this socket (at most {limit})")]
            )
            return
        query, variables = payload.get("query"), payload.get("variables")
        operation_name = payload.get("operationName")
        if (
            not isinstance(query, str)
            or not (variables is None or isinstance(variables, dict))
            or not (operation_name is None or isinstance(operation_name, str))
        ):
            self.handler.errors(
                self, sub_id, [_bad("payload needs a string query, an object of variables")]
            )
            return
        # One span per operation, continuing the upgrade request's `traceparent`: the named
        # queries it sends (the first result of a live query included) become its children.
        attributes = {"graphql.websocket.protocol": self.handler.protocol}
        with self.gateway.tracing.span("graphql websocket", self.ws.headers, True, attributes):
            await self._start(sub_id, query, variables, operation_name)

    async def _start(
        self, sub_id: str, query: str, variables: dict[str, Any] | None, operation_name: Any
    ) -> None:
        executor = self.gateway.executor
        prepared = executor.prepare(query)
        if prepared.errors:
            self.handler.errors(self, sub_id, prepared.errors)
            return
        operation = prepared.operation(operation_name)
        if isinstance(operation, dict):
            self.handler.errors(self, sub_id, [operation])
            return
        coerced = executor.coerce(operation, variables)
        if isinstance(coerced, list):
            self.handler.errors(self, sub_id, coerced)
            return
        context = Context(self.gateway.upstream, self.gateway.versions, self.claims)
        if operation.kind is not OperationType.SUBSCRIPTION or operation.as_query is None:
            await self._run_once(sub_id, prepared.document, context, variables, operation_name)
            return
        subscriber = Subscriber(self, sub_id, frame_prefix(sub_id, self.handler.result_type))
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
                "type": self.handler.result_type,
                "payload": result_payload(result),
            }
        )
        self.send_json({"id": sub_id, "type": "complete"})

    def stop(self, sub_id: Any) -> None:
        """End one subscription, if this socket holds it."""
        subscriber = self.subscriptions.pop(sub_id, None) if isinstance(sub_id, str) else None
        if subscriber is not None:
            self.gateway.hub.unsubscribe(subscriber)


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
