"""GraphQL over WebSocket on `/graphql`: one connection core, one handler per subprotocol."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from starlette.websockets import WebSocket, WebSocketState

from gateway.security import origin_allowed
from gateway.ws.core import Connection, Handler
from gateway.ws.graphql_ws import GraphQLWSHandler
from gateway.ws.transport_ws import TransportWSHandler

if TYPE_CHECKING:
    from gateway.app import Gateway

__all__ = ["HANDLERS", "Connection", "graphql_ws_endpoint"]

#: The subprotocols served, by name; the first one a client offers wins.
HANDLERS: dict[str, Handler] = {
    handler.protocol: handler for handler in (TransportWSHandler(), GraphQLWSHandler())
}


async def graphql_ws_endpoint(websocket: WebSocket) -> None:
    """`/graphql` WebSocket: negotiate the protocol, check the origin, serve the connection."""
    gateway: Gateway = websocket.app.state.gateway
    offered = websocket.scope.get("subprotocols") or []
    protocol = next((p for p in offered if p in HANDLERS), None)
    await websocket.accept(subprotocol=protocol)
    if protocol is None:
        await websocket.close(4406, "Subprotocol not acceptable: use graphql-transport-ws")
        return
    origin = websocket.headers.get("origin")
    if not origin_allowed(gateway.settings, origin, websocket.headers.get("host")):
        await websocket.close(4403, f"Forbidden: origin {origin} is not allowed")
        return
    connection = Connection(websocket, HANDLERS[protocol], gateway)
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
