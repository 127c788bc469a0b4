"""The system under test for the gateway benchmarks, and the load tools they share.

nats-server, the materializer and the gateway each run as their own process (the gateway
on one uvicorn worker), as in production; the load comes from this process. Each runs
with the product's default settings; settings in this process's environment pass through
to them (e.g. ``BATCH_MAX_WAIT_MS=0``; docs/BENCHMARKS.md says what each figure ran
with).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from pulse_bi.natsserver import LocalNatsServer, free_port

GATEWAY_MAIN = """
import os, uvicorn
from gateway.app import create_app, tune_gc, uvicorn_options
from gateway.settings import Settings
settings = Settings.from_env(os.environ)
if os.environ.get("BENCH_TRACE_SDK"):
    # A real SDK pipeline whose exporter drops the spans: the cost of making them.
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
    class Drop(SpanExporter):
        def export(self, spans):
            return SpanExportResult.SUCCESS
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Drop()))
    trace.set_tracer_provider(provider)
tune_gc()
options = uvicorn_options(settings)
options["ws"] = os.environ.get("BENCH_UVICORN_WS", options["ws"])
uvicorn.run(create_app(settings), host=settings.host, port=settings.port,
            log_level="warning", loop="uvloop", http="httptools", **options)
"""

BARE_MAIN = """
import os, sys, uvicorn
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
body = open(sys.argv[1], "rb").read()
media = sys.argv[2]
async def endpoint(request):
    await request.body()
    return Response(body, media_type=media)
app = Starlette(routes=[Route("/graphql", endpoint, methods=["GET", "POST"])])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[3]), log_level="warning",
            loop="uvloop", http="httptools")
"""


@dataclass
class Stack:
    """nats-server + materializer + gateway processes on free ports in a temp directory."""

    tmp: Path
    nats: LocalNatsServer | None = None
    gateway_port: int = field(default_factory=free_port)
    materializer_port: int = field(default_factory=free_port)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def duckdb_path(self) -> Path:
        """The materializer's DuckDB file."""
        return self.tmp / "bench.duckdb"

    @property
    def materializer_url(self) -> str:
        """Base URL of the materializer's /health, /stats and /metrics."""
        return f"http://127.0.0.1:{self.materializer_port}"

    def start(
        self,
        gateway_env: dict[str, str] | None = None,
        materializer_env: dict[str, str] | None = None,
        materializer_main: str | None = None,
    ) -> Stack:
        """Start everything and wait until the gateway's /health is 200.

        ``materializer_main``: Python code to run instead of ``pulse-bi materializer``.
        """
        self.nats = LocalNatsServer(store_dir=self.tmp / "js").start()
        env = {**os.environ, "NATS_URL": self.nats.url}
        command = [sys.executable, "-m", "pulse_bi", "materializer"]
        if materializer_main is not None:
            command = [sys.executable, "-c", materializer_main]
        self.spawn(
            "materializer",
            command,
            {
                **env,
                "DUCKDB_PATH": str(self.duckdb_path),
                "DATA_PATH": str(self.tmp),
                "MATERIALIZER_HTTP_PORT": str(self.materializer_port),
                **(materializer_env or {}),
            },
        )
        self.spawn(
            "gateway",
            [sys.executable, "-c", GATEWAY_MAIN],
            {
                **env,
                "GATEWAY_HOST": "127.0.0.1",
                "GATEWAY_PORT": str(self.gateway_port),
                "GATEWAY_WS_SEND_QUEUE": "1024",
                **(gateway_env or {}),
            },
        )
        wait_healthy(self.gateway_url + "/health", 60)
        return self

    def spawn(self, name: str, args: list[str], env: dict[str, str]) -> None:
        """Start one child process, its output in the temp directory."""
        log = open(self.tmp / f"{name}.log", "wb")  # noqa: SIM115 (lives as long as the child)
        self.processes[name] = subprocess.Popen(args, env=env, stdout=log, stderr=log)

    def pid(self, name: str) -> int:
        """Process id of one child."""
        return self.processes[name].pid

    def stop(self) -> None:
        """Stop the children, then nats-server."""
        for process in reversed(self.processes.values()):
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        if self.nats is not None:
            self.nats.stop()


@contextlib.contextmanager
def running_stack(gateway_env: dict[str, str] | None = None) -> Iterator[Stack]:
    """A started Stack, stopped on exit."""
    with tempfile.TemporaryDirectory(prefix="pulse-bi-bench-") as tmp:
        stack = Stack(Path(tmp))
        try:
            yield stack.start(gateway_env)
        finally:
            stack.stop()


def wait_healthy(url: str, timeout: float) -> None:
    """Poll a /health URL until it answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"{url} not healthy within {timeout}s")


@contextlib.contextmanager
def bare_server(body: bytes, media_type: str, tmp: Path) -> Iterator[int]:
    """A bare Starlette app on uvicorn answering every POST with `body`."""
    port = free_port()
    path = tmp / "bare-body"
    path.write_bytes(body)
    process = subprocess.Popen(
        [sys.executable, "-c", BARE_MAIN, str(path), media_type, str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                httpx.post(f"http://127.0.0.1:{port}/graphql", timeout=1)
                break
            time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(10)


def post_request(port: int, body: bytes) -> bytes:
    """A keep-alive HTTP/1.1 POST /graphql request, as raw bytes."""
    return (
        f"POST /graphql HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Content-Type: application/json\r\nAccept: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def http_load(
    port: int, request: bytes, clients: int, seconds: float, expect: bytes = b"200"
) -> tuple[list[float], int]:
    """Keep-alive clients sending `request` back to back; per-request latencies (s) and errors

    (answers whose status is not `expect`).

    A raw asyncio client, so the load generator costs far less CPU than the server.
    """
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                head, _ = await http_round_trip(reader, writer, request)
                latencies.append(time.perf_counter() - started)
                if not head.startswith(b"HTTP/1.1 " + expect):
                    errors += 1
        finally:
            writer.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies, errors


async def websocket_upgrade(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int
) -> bytes:
    """Ask for a `graphql-transport-ws` upgrade on /graphql; the head of the server's reply."""
    writer.write(upgrade_request(port))
    return await reader.readuntil(b"\r\n\r\n")


def upgrade_request(port: int) -> bytes:
    """The HTTP/1.1 request that opens a `graphql-transport-ws` WebSocket on /graphql."""
    return (
        f"GET /graphql HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n"
    ).encode()


def text_frame(data: bytes) -> bytes:
    """One masked client text frame (an all-zero mask: the bytes go as they are)."""
    length = len(data)
    if length < 126:
        header = bytes([0x81, 0x80 | length])
    else:
        header = bytes([0x81, 0x80 | 126]) + length.to_bytes(2, "big")
    return header + b"\0\0\0\0" + data


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Opcode and payload of the next (unmasked) server frame."""
    first, second = await reader.readexactly(2)
    length = second & 0x7F
    if length == 126:
        length = int.from_bytes(await reader.readexactly(2), "big")
    elif length == 127:
        length = int.from_bytes(await reader.readexactly(8), "big")
    return first & 0x0F, await reader.readexactly(length)


async def http_round_trip(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[bytes, bytes]:
    """Send one raw HTTP/1.1 request on a kept-alive connection; the reply's head and body."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    return head, await reader.readexactly(length)


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (0-100) of values."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


class RawWebSocket:
    """A minimal graphql-transport-ws client on raw asyncio streams.

    The `websockets` package costs more CPU per frame than the server under test; with
    10,000 sockets in one load process that would measure the client, not the gateway.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int) -> RawWebSocket:
        """Open the socket and do the HTTP upgrade for graphql-transport-ws."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head = await websocket_upgrade(reader, writer, port)
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(head.decode(errors="replace"))
        return cls(reader, writer)

    def send(self, text: str) -> None:
        """Send one text frame."""
        self.writer.write(text_frame(text.encode()))

    async def recv(self) -> bytes:
        """The payload of the next text frame (answering pings on the way)."""
        while True:
            opcode, payload = await read_frame(self.reader)
            if opcode == 0x9:
                self.writer.write(bytes([0x8A, 0x80 | len(payload)]) + b"\0\0\0\0" + payload)
                continue
            if opcode == 0x8:
                raise ConnectionError("closed by the server")
            return payload

    def close(self) -> None:
        """Drop the connection."""
        self.writer.close()


class Watcher(asyncio.Protocol):
    """A subscriber as a bare asyncio Protocol: handshake, init, subscribe, then watch frames.

    Parsing frames in `data_received` (no per-frame task switches) keeps 10,000 watchers
    in one load process cheap enough that the figure measures the gateway.
    """

    def __init__(self, port: int, query: str, board: Board) -> None:
        self.port = port
        self.subscribe = json.dumps(
            {"id": "1", "type": "subscribe", "payload": {"query": query}}
        ).encode()
        self.board = board
        self.buffer = bytearray()
        self.upgraded = False
        self.transport: asyncio.Transport | None = None
        self.first = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Send the upgrade request."""
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        transport.write(upgrade_request(self.port))  # type: ignore[attr-defined]

    def _send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(text_frame(data))

    def data_received(self, data: bytes) -> None:
        """Parse whatever frames are complete."""
        self.buffer += data
        if not self.upgraded:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            del self.buffer[: end + 4]
            self.upgraded = True
            self._send(b'{"type":"connection_init"}')
        while len(self.buffer) >= 2:
            length = self.buffer[1] & 0x7F
            offset = 2
            if length == 126:
                if len(self.buffer) < 4:
                    return
                length = int.from_bytes(self.buffer[2:4], "big")
                offset = 4
            if len(self.buffer) < offset + length:
                return
            payload = bytes(self.buffer[offset : offset + length])
            del self.buffer[: offset + length]
            self._frame(payload)

    def _frame(self, payload: bytes) -> None:
        if b'"connection_ack"' in payload:
            self._send(self.subscribe)
        elif b'"next"' in payload:
            if not self.first.done():
                self.first.set_result(payload)
            else:
                self.board.seen(payload)

    def close(self) -> None:
        """Drop the connection."""
        if self.transport is not None:
            self.transport.close()


class Board:
    """Counts watchers that saw a frame containing `marker`, and when the last one did."""

    def __init__(self) -> None:
        self.marker = b"\0"
        self.count = 0
        self.expected = 0
        self.last = 0.0
        self.done = asyncio.Event()

    def expect(self, marker: bytes, expected: int) -> None:
        """Start counting frames that contain `marker`."""
        self.marker, self.count, self.expected = marker, 0, expected
        self.done = asyncio.Event()

    def seen(self, payload: bytes) -> None:
        """One watcher got a frame."""
        if self.marker in payload:
            self.count += 1
            if self.count == self.expected:
                self.last = time.perf_counter()
                self.done.set()


async def watch(port: int, query: str, board: Board, kind: type[Watcher] = Watcher) -> Watcher:
    """A connected watcher (of class `kind`), after its first result."""
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(lambda: kind(port, query, board), "127.0.0.1", port)
    await protocol.first
    return protocol
