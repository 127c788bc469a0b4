"""Gateway test fixtures: a contract-shaped query service on real NATS, and gateway apps.

`canned` answers the named queries of docs/API.md over a real nats.micro service with
fixed, contract-shaped data, so the gateway can be tested without the materializer's
store; the end-to-end tests use the real materializer (tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from nats.aio.client import Client as NATS
from nats.micro import add_service
from nats.micro.request import Request
from nats.micro.service import Service
from playwright.async_api import Browser, async_playwright

from gateway.app import create_app, state, uvicorn_options
from gateway.settings import Settings
from pulse_bi.contract import (
    CHANGES_SUBJECT,
    QUERY_NAMES,
    QUERY_QUEUE_GROUP,
    QUERY_SERVICE_NAME,
    ChangeNotice,
    Changes,
    notice_encoder,
    query_subject,
)
from pulse_bi.natsserver import LocalNatsServer, free_port
from tests.gateway.browser import CHROMIUM, CHROMIUM_ARGS
from tests.gateway.kiosk_stack import Stack

HOUR = "2026-11-25T10:00:00+00:00"

#: The one hour of sales in ROWS, which is also the whole day's summary.
SALES = {
    "orders": 3,
    "cancelled_orders": 1,
    "gross_revenue": "300.10",
    "cancelled_revenue": "100.00",
    "net_revenue": "200.10",
    "units": 7,
    "average_order_value": "100.05",
}

#: The receivables buckets in ROWS: one customer owes all of it.
AGING = {
    "current": "10.00",
    "days_1_30": "20.00",
    "days_31_60": "0.00",
    "days_61_90": "0.00",
    "over_90": "5.55",
    "total": "35.55",
    "open_invoices": 3,
}

ROWS: dict[str, Any] = {
    "sales_by_hour": [{"hour": HOUR, **SALES}],
    "sales_summary": {
        "from": "2026-11-25T00:00:00+00:00",
        "to": "2026-11-26T00:00:00+00:00",
        **SALES,
    },
    "top_products": [
        {"sku": "SKU-1", "name": "Widget", "category": "tools", "units": 5, "revenue": "150.00"}
    ],
    "stock_levels": [
        {
            "sku": "SKU-1",
            "warehouse": "WH-1",
            "on_hand": 2,
            "reorder_point": 5,
            "low_stock": True,
            "name": "Widget",
            "category": "tools",
            "last_movement_at": "2026-11-25T10:04:05+00:00",
        }
    ],
    "stock_movements": [
        {
            "sequence": 4_000_000_000,
            "time": "2026-11-25T10:04:05+00:00",
            "sku": "SKU-1",
            "warehouse": "WH-1",
            "quantity_delta": -3,
            "reason": "shipment",
        }
    ],
    "ar_aging": {
        "as_of": "2026-11-25",
        **AGING,
        "by_customer": [{"customer_id": "C-1", "customer_name": "Acme", **AGING}],
    },
    "overdue_invoices": [
        {
            "invoice_id": "INV-1",
            "customer_id": "C-1",
            "customer_name": "Acme",
            "order_id": None,
            "amount": "25.55",
            "paid": "0.00",
            "balance": "25.55",
            "issued_on": "2026-10-01",
            "due_date": "2026-10-31",
            "days_overdue": 25,
            "bucket": "1-30",
        }
    ],
    "rejected_events": [],
    "pipeline": {
        "last_sequence": 12,
        "stream_last_sequence": 12,
        "lag": 0,
        "events_applied": 11,
        "events_rejected": 1,
        "batches": 2,
        "last_event_time": "2026-11-25T10:04:05+00:00",
        "last_batch_at": "2026-11-25T10:04:06+00:00",
        "version": 12,
        "status": "degraded",
        "reason": "3 events missing from the stream in 1 gap (see pipeline.gaps)",
        "gap_count": 1,
        "events_missing": 3,
        "gaps": [{"from": 4, "to": 6, "events": 3, "detected_at": "2026-11-25T10:04:06+00:00"}],
    },
}
ROWS["low_stock"] = ROWS["stock_levels"]
ROWS["sales_by_channel"] = [
    {
        "channel": "web",
        **{k: v for k, v in ROWS["sales_summary"].items() if k not in ("from", "to")},
    }
]
ROWS["sites"] = [{"site": "wh1", "events": 7, "last_event_time": "2026-11-25T10:04:05+00:00"}]


@dataclass
class Canned:
    """A nats.micro service answering named queries with `data`, plus a request log."""

    nc: NATS
    data: dict[str, Any] = field(default_factory=lambda: json.loads(json.dumps(ROWS)))
    version: int = 12
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    service: Service | None = None
    #: Rows per page for list results (to exercise paging).
    page: int = 1000
    #: Seconds a named query takes to answer (as a slow read of a large store would).
    delays: dict[str, float] = field(default_factory=dict)
    #: Named queries that answer with an `internal` error.
    failing: set[str] = field(default_factory=set)
    #: The ``cpu_seconds`` each named query's replies say (none: not said).
    cpu: dict[str, float] = field(default_factory=dict)

    async def start(self) -> Canned:
        """Register the service and its endpoints."""
        self.service = await add_service(
            self.nc, name=QUERY_SERVICE_NAME, version="0.0.1", queue_group=QUERY_QUEUE_GROUP
        )
        for name in QUERY_NAMES:
            await self.service.add_endpoint(
                name=name, subject=query_subject(name), handler=self._handler(name)
            )
        return self

    def _handler(self, name: str) -> Any:
        async def handle(request: Request) -> None:
            params = json.loads(request.data or b"{}")
            self.requests.append((name, params))
            if name in self.delays:
                await asyncio.sleep(self.delays[name])
            if params.get("from") == "2000-01-01T00:00:00+00:00":
                body = {"error": {"code": "bad_request", "message": "from is too old"}}
                await request.respond(json.dumps(body).encode())
                return
            if name in self.failing:
                body = {"error": {"code": "internal", "message": "the store failed"}}
                await request.respond(json.dumps(body).encode())
                return
            data = self.data[name]
            reply: dict[str, Any] = {"version": self.version}
            if isinstance(data, list):
                offset = int(params.get("offset", 0))
                limit = min(int(params.get("limit", self.page)), self.page)
                reply["data"] = data[offset : offset + limit]
                if offset + limit < len(data):
                    reply["next_offset"] = offset + limit
            else:
                reply["data"] = data
            if name in self.cpu:
                reply["cpu_seconds"] = self.cpu[name]
            await request.respond(json.dumps(reply).encode())

        return handle

    async def stop(self) -> None:
        """Stop answering (as if the materializer went away)."""
        if self.service is not None:
            await self.service.stop()
            self.service = None

    async def notify(self, aggregates: list[str], *, flush: bool = True, **changes: Any) -> None:
        """Publish a change notice for a new version (``flush=False`` leaves it buffered,
        so that a burst reaches the gateway in one write)."""
        previous, self.version = self.version, self.version + 1
        notice = ChangeNotice(
            version=self.version,
            aggregates=aggregates,
            changes=Changes(**changes),
            previous_version=previous,
        )
        await self.nc.publish(CHANGES_SUBJECT, notice_encoder.encode(notice))
        if flush:
            await self.nc.flush()

    async def heartbeat(self) -> None:
        """Publish a version heartbeat."""
        notice = ChangeNotice(version=self.version, kind="heartbeat")
        await self.nc.publish(CHANGES_SUBJECT, notice_encoder.encode(notice))
        await self.nc.flush()

    async def heartbeat_until_known(self, versions: Any) -> None:
        """Beat until the gateway has heard one (it may subscribe after the first)."""

        async def heard() -> bool:
            await self.heartbeat()
            await asyncio.sleep(0.02)
            return bool(versions.known)

        await until(heard, interval=0.05)


@pytest.fixture
async def canned(nc: NATS) -> AsyncIterator[Canned]:
    """A running contract-shaped query service."""
    service = await Canned(nc).start()
    try:
        yield service
    finally:
        await service.stop()


@pytest.fixture
def settings(nats_server: LocalNatsServer) -> Settings:
    """Gateway settings pointing at the test NATS server."""
    return Settings(nats_url=nats_server.url, host="127.0.0.1", port=free_port())


@dataclass
class Server:
    """A gateway served by a real uvicorn on a free port, in a thread."""

    settings: Settings
    server: uvicorn.Server | None = None
    thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.settings.port}/graphql"

    def start(self) -> Server:
        """Start uvicorn and wait until it accepts connections."""
        config = uvicorn.Config(
            create_app(self.settings),
            host="127.0.0.1",
            port=self.settings.port,
            log_level="warning",
            lifespan="on",
            **uvicorn_options(self.settings),
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.settings.port), timeout=0.2),
            ):
                if self.server.started:
                    return self
            time.sleep(0.02)
        raise TimeoutError("uvicorn did not start")

    def stop(self) -> None:
        """Ask uvicorn to exit and wait for it."""
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(10)


@pytest.fixture
def server_factory() -> Iterator[Any]:
    """Start real uvicorn gateways; all are stopped after the test."""
    servers: list[Server] = []

    def start(settings: Settings) -> Server:
        server = Server(settings).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


async def until(predicate: Any, timeout: float = 5.0, interval: float = 0.02) -> None:
    """Wait until `predicate()` is true (awaiting it when it returns an awaitable)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def app_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process httpx client of a gateway app (lifespan running, NATS connected)."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        await until(lambda: state(app).upstream.connected)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            http.app = app  # type: ignore[attr-defined]
            yield http


@pytest.fixture
async def client(settings: Settings, canned: Canned) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client of a gateway whose lifespan is running."""
    async with app_client(settings) as http:
        yield http


Serve = Callable[..., Server]


@pytest.fixture
def serve(settings: Settings, canned: Canned, server_factory: Any) -> Serve:
    """Starts a real gateway (uvicorn) on the test settings with these changes, over `canned`."""

    def start(**changes: Any) -> Server:
        server: Server = server_factory(settings.replace(**changes))
        return server

    return start


AUDIT = Path(__file__).parent / "audit"
NodeScript = Callable[[str, str], Awaitable[tuple[int | None, str, str]]]


@pytest.fixture
def node_script(settings: Settings, canned: Canned, server_factory: Any) -> NodeScript:
    """Runs `audit/<script>` on Node against a real gateway's /graphql.

    Returns its exit status, stdout and stderr. Skips when Node.js is missing; fails when
    `npm ci` has not installed the npm `package` the script needs.
    """

    async def run(script: str, package: str) -> tuple[int | None, str, str]:
        node = shutil.which("node")
        if node is None:
            pytest.skip(f"node is not installed: {package} needs Node.js 20+")
        if not (AUDIT / "node_modules" / package).exists():
            pytest.fail("run `npm ci --prefix tests/gateway/audit` first (make test does)")
        server = server_factory(settings)
        process = await asyncio.create_subprocess_exec(
            node,
            str(AUDIT / script),
            server.url + "/graphql",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
        return process.returncode, stdout.decode(), stderr.decode()

    return run


# -- pages in a real browser (test_kiosk, test_landing, test_graphiql) -----------------


@pytest.fixture
def stack(nats_server: LocalNatsServer, tmp_path: Path) -> Iterator[Stack]:
    """nats-server and the materializer running; each test starts the gateway it needs."""
    running = Stack(nats=nats_server, tmp=tmp_path)
    running.start_materializer()
    try:
        yield running
    finally:
        running.stop("gateway")
        running.stop("materializer")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Debian's Chromium, headless, driven by Playwright."""
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()
