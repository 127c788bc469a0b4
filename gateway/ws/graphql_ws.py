"""`graphql-ws`: the legacy subscriptions-transport-ws protocol, for older clients.

Messages: `connection_init` → `connection_ack` and `ka`; `start` → `data`… `complete`;
`stop` ends an operation and is answered with `complete`; `connection_terminate` closes
the socket. The server sends `ka` every keep-alive interval and expects nothing back.
"""

from __future__ import annotations

from typing import Any

from gateway.ws.core import Close, Connection, Handler, unknown_message


class GraphQLWSHandler(Handler):
    """Frames of the legacy `graphql-ws` over the connection core."""

    protocol = "graphql-ws"
    result_type = "data"

    async def handle(self, connection: Connection, kind: str, message: dict[str, Any]) -> None:
        """Act on one client message."""
        match kind:
            case "start":
                await connection.subscribe(message)
            case "stop":
                sub_id = message.get("id")
                connection.stop(sub_id)
                if isinstance(sub_id, str):
                    connection.send_json({"id": sub_id, "type": "complete"})
            case "connection_terminate":
                raise Close(1000, "terminated")
            case _:
                raise unknown_message(kind)

    def acknowledge(self, connection: Connection) -> None:
        """Accept `connection_init`, with a first keep-alive."""
        connection.send_json({"type": "connection_ack"})
        connection.send_json({"type": "ka"})

    def refuse(self, connection: Connection, reason: str) -> None:
        """`connection_error` says why before the close."""
        connection.send_json({"type": "connection_error", "payload": {"message": reason}})

    def errors(self, connection: Connection, sub_id: str, errors: list[dict[str, Any]]) -> None:
        """`error` carries one error object."""
        connection.send_json({"id": sub_id, "type": "error", "payload": errors[0]})

    def keepalive(self, connection: Connection, now: float, interval: float) -> None:
        """`ka` once acknowledged; clients never answer it, so silence closes nothing."""
        if connection.acknowledged:
            connection.send_json({"type": "ka"})
