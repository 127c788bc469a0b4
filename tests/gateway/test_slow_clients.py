"""Clients that stop reading: dropped with 1008 within a bounded time, nobody else affected."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from typing import Any

import httpx
import psutil
import pytest
import websockets

from bench.gateway_stack import read_frame, websocket_upgrade
from gateway.app import state
from gateway.settings import Settings
from tests.gateway.conftest import Canned, Server, until
from tests.gateway.test_websocket import connect, receive, start_message

LOW_STOCK = "subscription { lowStock { sku name onHand } }"


class RawClient:
    """A graphql-transport-ws client on a plain socket with a tiny receive buffer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> RawClient:
        """Connect, upgrade, `connection_init`, and wait for the ack."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # A small window: the server's buffers fill after a few frames, not megabytes.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=2**22)
        head = await websocket_upgrade(reader, writer, port)
        assert head.startswith(b"HTTP/1.1 101"), head
        client = cls(reader, writer)
        client.send('{"type":"connection_init"}')
        opcode, payload = await client.frame()
        assert opcode == 1 and json.loads(payload)["type"] == "connection_ack"
        return client

    def send(self, text: str) -> None:
        """One masked text frame (an all-zero mask)."""
        data = text.encode()
        header = bytes([0x81, 0x80 | 126]) + len(data).to_bytes(2, "big")
        self.writer.write(header + b"\0\0\0\0" + data)

    async def frame(self) -> tuple[int, bytes]:
        """Opcode and payload of the next frame."""
        return await read_frame(self.reader)

    async def read_to_end(self, timeout: float) -> int | None:
        """Read every frame until the connection ends: the close code, or None if cut off."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                opcode, payload = await asyncio.wait_for(self.frame(), timeout)
            except (asyncio.IncompleteReadError, ConnectionError):
                return None
            if opcode == 0x8:
                return int.from_bytes(payload[:2], "big")
        raise AssertionError(f"the connection did not end within {timeout}s")


def big_rows(on_hand: int) -> list[dict[str, Any]]:
    """About 40 KB of low-stock rows: a few frames fill a small socket."""
    return [
        {
            "sku": f"SKU-{i}",
            "warehouse": "WH-1",
            "on_hand": on_hand,
            "reorder_point": 5,
            "low_stock": True,
            "name": "W" * 400,
            "category": "tools",
            "last_movement_at": "2026-11-25T10:04:05+00:00",
        }
        for i in range(100)
    ]


@pytest.mark.parametrize(
    ("limits", "reads_late", "expected"),
    [
        # A frame stuck in a write longer than the send timeout; the client reads again
        # within the grace: it gets every frame already written and then the 1008 close.
        ({"ws_send_timeout": 0.5, "ws_send_queue": 10_000}, True, 1008),
        # The send queue fills first; the client never reads again: the socket is cut.
        ({"ws_send_timeout": 0.5, "ws_send_queue": 3}, False, None),
    ],
)
async def test_a_client_that_stops_reading_is_dropped_and_others_keep_their_updates(
    settings: Settings,
    canned: Canned,
    server_factory: Any,
    limits: dict[str, Any],
    reads_late: bool,
    expected: int | None,
) -> None:
    canned.data["low_stock"] = big_rows(1)
    server: Server = server_factory(settings.replace(ws_keepalive=60.0, **limits))
    gateway = state(server.server.config.app)  # type: ignore[union-attr]
    slow = await RawClient.open(settings.port)
    slow.send(start_message("graphql-transport-ws", "s", LOW_STOCK))
    assert (await slow.frame())[0] == 1  # the first result; then it stops reading
    fast = await connect(server, "graphql-transport-ws")
    await fast.send(start_message("graphql-transport-ws", "f", LOW_STOCK))
    await receive(fast)
    dropped = gateway.metrics.ws_dropped._value.get()
    on_hand = 1
    started = time.monotonic()
    while gateway.metrics.ws_dropped._value.get() == dropped:
        assert time.monotonic() - started < 30, "the slow client was never dropped"
        on_hand += 1
        canned.data["low_stock"] = big_rows(on_hand)
        await canned.notify(["stock"], skus=["SKU-1"], warehouses=["WH-1"])
        # The reading client is not held back by the slow one.
        update = await receive(fast)
        assert update["payload"]["data"]["lowStock"][0]["onHand"] == on_hand
    # Its subscription is released at once, before the socket is gone.
    assert gateway.hub.stats() == {"groups": 1, "subscriptions": 1}
    if not reads_late:
        # Not reading during the grace: the socket is aborted, not left half-closed.
        await until(lambda: len(gateway.connections) == 1, timeout=10)
    assert await slow.read_to_end(timeout=10) == expected
    slow.writer.close()  # else its finalizer warns later, wherever the collector runs
    await until(lambda: len(gateway.connections) == 1, timeout=10)
    on_hand += 1
    canned.data["low_stock"] = big_rows(on_hand)
    await canned.notify(["stock"], skus=["SKU-1"], warehouses=["WH-1"])
    assert (await receive(fast))["payload"]["data"]["lowStock"][0]["onHand"] == on_hand
    await fast.close()


async def test_socket_churn_gives_its_memory_back(settings: Settings, canned: Canned) -> None:
    """Connect, subscribe, disconnect, many times, on the served gateway (`pulse-bi gateway`).

    Clients are `websockets` defaults, which offer permessage-deflate like browsers do.
    """
    env = {
        **os.environ,
        "NATS_URL": settings.nats_url,
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(settings.port),
        "GATEWAY_LOG_LEVEL": "warning",
    }
    process = subprocess.Popen([sys.executable, "-m", "pulse_bi", "gateway", "serve"], env=env)
    try:
        url = f"http://127.0.0.1:{settings.port}"
        async with httpx.AsyncClient(base_url=url) as http:

            async def up() -> bool:
                with contextlib.suppress(httpx.HTTPError):
                    return (await http.get("/stats")).status_code == 200
                return False

            await until(up, timeout=30, interval=0.1)

            async def cycle(index: int) -> None:
                async with websockets.connect(
                    url.replace("http", "ws") + "/graphql",
                    subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
                ) as ws:
                    await ws.send('{"type":"connection_init"}')
                    await receive(ws)
                    await ws.send(start_message("graphql-transport-ws", str(index), LOW_STOCK))
                    assert (await receive(ws))["type"] == "next"

            async def cycles(count: int) -> None:
                for batch in range(0, count, 10):
                    await asyncio.gather(*(cycle(batch + i) for i in range(10)))

            gateway = psutil.Process(process.pid)
            await cycles(300)
            baseline = gateway.memory_info().rss
            await cycles(900)
            after = gateway.memory_info().rss
            stats = (await http.get("/stats")).json()
        assert stats["websocket_connections"] == 0
        assert stats["live"] == {"groups": 0, "subscriptions": 0}
        assert after < baseline * 1.2, f"RSS {baseline >> 20} -> {after >> 20} MB"
    finally:
        process.terminate()
        process.wait(10)
