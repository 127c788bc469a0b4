"""WebSocket clients of the soak: listeners that answer keep-alives, sockets that never read."""

from __future__ import annotations

import asyncio
import json

from bench.gateway_stack import Board, Watcher, watch


class Listener(Watcher):
    """A long-lived subscriber that answers both keep-alives, as clients do: the
    protocol's `{"type":"ping"}` and uvicorn's WebSocket ping frames (unanswered, uvicorn
    closes the socket after `ws_ping_interval` + `ws_ping_timeout`, 40 s).
    """

    #: Offer permessage-deflate in the upgrade, as browsers do (the gateway declines it
    #: unless GATEWAY_WS_COMPRESSION=true; these clients read uncompressed frames only).
    offer_deflate = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Send the upgrade request (offering permessage-deflate)."""
        self.transport = transport  # type: ignore[assignment]
        transport.write(  # type: ignore[attr-defined]
            (
                f"GET /graphql HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: graphql-transport-ws\r\n"
                + (
                    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
                    if self.offer_deflate
                    else ""
                )
                + "\r\n"
            ).encode()
        )

    def data_received(self, data: bytes) -> None:
        """Answer ping frames; hand text frames on."""
        if not self.upgraded:
            super().data_received(data)
            return
        self.buffer += data
        while len(self.buffer) >= 2:
            first = self.buffer[0]
            opcode, length, offset = first & 0x0F, self.buffer[1] & 0x7F, 2
            if length == 126:
                if len(self.buffer) < 4:
                    return
                length, offset = int.from_bytes(self.buffer[2:4], "big"), 4
            if len(self.buffer) < offset + length:
                return
            payload = bytes(self.buffer[offset : offset + length])
            del self.buffer[: offset + length]
            if opcode == 0x9 and self.transport is not None:
                self.transport.write(bytes([0x8A, 0x80 | length]) + b"\0\0\0\0" + payload)
            elif opcode == 0x1:
                self._frame(payload)

    def _frame(self, payload: bytes) -> None:
        if payload.startswith(b'{"type":"ping"'):
            self._send(b'{"type":"pong"}')
            return
        super()._frame(payload)


async def listen(port: int, query: str, board: Board) -> Watcher:
    """A connected listener, after its first result."""
    return await watch(port, query, board, Listener)


async def silent_socket(port: int, query: str) -> asyncio.StreamWriter:
    """A client that subscribes and then never reads again (nor answers pings)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        (
            f"GET /graphql HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n"
        ).encode()
    )
    await reader.readuntil(b"\r\n\r\n")
    for text in (
        '{"type":"connection_init"}',
        json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query}}),
    ):
        data = text.encode()
        header = bytes([0x81, 0x80 | 126]) + len(data).to_bytes(2, "big")
        writer.write(header + b"\0\0\0\0" + data)
    return writer
