"""`graphql-transport-ws`: the current GraphQL over WebSocket protocol.

Messages: `connection_init` → `connection_ack`; `subscribe` → `next`… `complete`;
`complete` from the client ends an operation; `ping`/`pong` both ways, and a client that
answers no ping for two keep-alive intervals is closed with 4408 (docs/GATEWAY.md).
"""

from __future__ import annotations

from typing import Any

from gateway.ws.core import Connection, Handler, unknown_message


class TransportWSHandler(Handler):
    """Frames of `graphql-transport-ws` over the connection core."""

    protocol = "graphql-transport-ws"
    result_type = "next"

    async def handle(self, connection: Connection, kind: str, message: dict[str, Any]) -> None:
        """Act on one client message."""
        match kind:
            case "ping":
                connection.send_json({"type": "pong"})
            case "pong":
                pass  # the reader already noted that the client is alive
            case "subscribe":
                await connection.subscribe(message)
            case "complete":
                connection.stop(message.get("id"))
            case _:
                raise unknown_message(kind)

    def acknowledge(self, connection: Connection) -> None:
        """Accept `connection_init`."""
        connection.send_json({"type": "connection_ack"})

    def refuse(self, connection: Connection, reason: str) -> None:
        """The protocol says why through the close code and reason only."""

    def errors(self, connection: Connection, sub_id: str, errors: list[dict[str, Any]]) -> None:
        """`error` carries the whole list."""
        connection.send_json({"id": sub_id, "type": "error", "payload": errors})

    def keepalive(self, connection: Connection, now: float, interval: float) -> None:
        """Ping; close a socket that answered none of the last two."""
        if now - connection.last_seen > 2 * interval:
            connection.close(4408, "keep-alive timeout: no pong")
            return
        connection.push('{"type":"ping"}')
