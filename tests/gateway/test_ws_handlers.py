"""The WebSocket split: one connection core that knows no protocol, one handler each."""

from __future__ import annotations

import ast
from pathlib import Path

from gateway.ws import HANDLERS
from gateway.ws.graphql_ws import GraphQLWSHandler
from gateway.ws.transport_ws import TransportWSHandler

CORE = Path(__file__).resolve().parents[2] / "gateway" / "ws" / "core.py"

#: Message types and names that belong to one protocol or the other.
PROTOCOL_WORDS = {
    "graphql-ws",
    "graphql-transport-ws",
    "connection_ack",
    "connection_error",
    "connection_terminate",
    "ka",
    "ping",
    "pong",
    "start",
    "stop",
    "subscribe",
    "next",
    "data",
    "error",
}


def test_each_subprotocol_has_its_handler() -> None:
    assert set(HANDLERS) == {"graphql-transport-ws", "graphql-ws"}
    assert isinstance(HANDLERS["graphql-transport-ws"], TransportWSHandler)
    assert isinstance(HANDLERS["graphql-ws"], GraphQLWSHandler)
    assert {h.result_type for h in HANDLERS.values()} == {"next", "data"}


def test_the_core_names_no_protocol_message() -> None:
    tree = ast.parse(CORE.read_text(encoding="utf-8"))
    strings = {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }
    assert not strings & PROTOCOL_WORDS, "protocol framing belongs in a handler"
    assert "legacy" not in CORE.read_text(encoding="utf-8")
