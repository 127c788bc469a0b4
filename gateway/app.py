"""The gateway application: `create_app(settings)` returns a Starlette app with a lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import importlib.util
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute

from gateway import alerts, graphiql, landing, rest
from gateway.bounded import Answerer
from gateway.caching import ETags
from gateway.compression import CompressionMiddleware
from gateway.execution import Executor
from gateway.exports import http as exports
from gateway.graphql_http import ResponseCache, graphql_http_endpoint
from gateway.live import Hub
from gateway.metrics import Metrics, MetricsMiddleware
from gateway.persisted import PersistedQueries
from gateway.security import Authenticator
from gateway.settings import Settings
from gateway.upstream import Upstream
from gateway.versions import Versions
from gateway.ws import Connection, graphql_ws_endpoint
from pulse_bi.tasks import cancel_until_done
from pulse_bi.tracing import Tracer

log = logging.getLogger("gateway")


class Gateway:
    """Everything one gateway process holds, reached from handlers via `app.state.gateway`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.versions = Versions(settings.version_ttl)
        self.upstream = Upstream(settings, self.versions, self.metrics)
        self.tracing = Tracer("gateway", settings.tracing)
        self.upstream.tracing = self.tracing
        self.persisted = PersistedQueries(settings)
        self.etags = ETags()
        self.executor = Executor(settings, self.persisted)
        self.answerer = Answerer(self.executor)
        self.hub = Hub(settings, self.executor, self.upstream, self.versions, self.metrics)
        self.auth = Authenticator(settings)
        self.responses = ResponseCache(settings.response_cache_entries)
        self.connections: set[Connection] = set()
        #: GraphQL over SSE streams open (gateway.sse).
        self.sse_streams = 0
        self.alerts = alerts.create(self)
        self.started = time.monotonic()
        self._keepalive: asyncio.Task[None] | None = None
        self._write_watchdog: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Open the NATS connection (or keep trying), start the hub and the keep-alive timer."""
        await self.hub.start()
        if self.alerts is not None:
            await self.alerts.start()
        await self.upstream.start()
        self._keepalive = asyncio.create_task(self._keepalive_loop(), name="ws-keepalive")
        self._write_watchdog = asyncio.create_task(self._write_loop(), name="ws-write-watchdog")

    async def close(self) -> None:
        """Close in reverse order of opening."""
        await cancel_until_done(t for t in (self._keepalive, self._write_watchdog) if t)
        for connection in list(self.connections):
            connection.close(1001, "server shutting down")
        if self.alerts is not None:
            await self.alerts.close()
        await self.hub.close()
        await self.upstream.close()
        self.answerer.close()

    async def _keepalive_loop(self) -> None:
        # One timer for all sockets instead of one task per socket.
        interval = self.settings.ws_keepalive
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for connection in list(self.connections):
                connection.keepalive(now, interval)

    async def _write_loop(self) -> None:
        # One timer for all sockets: a frame stuck in a write for longer than
        # GATEWAY_WS_SEND_TIMEOUT means the client stopped reading (docs/GATEWAY.md).
        timeout = self.settings.ws_send_timeout
        period = min(1.0, timeout / 4)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for connection in list(self.connections):
                connection.check_writes(now, timeout)


def tune_gc() -> None:
    """Process-wide GC settings for a long-running gateway (called by the CLI, not by tests).

    Thousands of long-lived sockets make a full collection take about a second, and it
    stalls every live update meanwhile. Start-up objects are frozen out of collection and
    young generations are collected far less often, so full collections become rare.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's WebSocket options for the gateway (the CLI, benchmarks and tests share them)."""
    return {
        # The sans-I/O WebSocket implementation: about half the memory per socket.
        "ws": "websockets-sansio",
        # Browsers offer permessage-deflate on every socket; accepting it costs a zlib
        # context per socket, and glibc kept the freed contexts of closed sockets
        # (RSS 58 -> 118 MB over 3,000 connect/disconnect cycles), so it is opt-in.
        "ws_per_message_deflate": settings.ws_compression,
        # Event streams (GraphQL over SSE) never end by themselves and ASGI cannot tell an
        # app that the server stops: after the longest request may take, uvicorn cancels
        # what still runs (the streams' clients reconnect elsewhere).
        "timeout_graceful_shutdown": max(1, round(settings.request_timeout)),
    }


def kiosk_routes() -> list[BaseRoute]:
    """The kiosk page's routes, when the kiosk package is installed."""
    if importlib.util.find_spec("gateway.kiosk") is None:
        return []
    kiosk = importlib.import_module("gateway.kiosk")
    routes = getattr(kiosk, "routes", None)
    return list(routes()) if callable(routes) else []


def create_app(settings: Settings) -> Starlette:
    """A gateway app; NATS and the hub open in its lifespan."""
    gateway = Gateway(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            await gateway.close()

    routes: list[BaseRoute] = [
        Route("/graphql", graphql_http_endpoint, methods=["GET", "POST"]),
        WebSocketRoute("/graphql", graphql_ws_endpoint),
        *rest.routes(),
        *exports.routes(),
        *landing.routes(),
    ]
    if settings.graphiql and gateway.persisted.graphiql:
        routes.extend(graphiql.routes())
    kiosk = kiosk_routes()
    if kiosk:
        routes.append(Mount("/kiosk", routes=kiosk))
    middleware = [Middleware(MetricsMiddleware, metrics=lambda: gateway.metrics)]
    if settings.compression_min_bytes:
        middleware.append(
            Middleware(CompressionMiddleware, minimum_size=settings.compression_min_bytes)
        )
    if settings.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=["GET", "POST", "OPTIONS"],
                allow_headers=[
                    "authorization",
                    "content-type",
                    "accept",
                    "if-none-match",
                    "traceparent",
                    "tracestate",
                ],
                expose_headers=["etag"],
                max_age=600,
            )
        )
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.gateway = gateway
    return app


def state(app: Any) -> Gateway:
    """The Gateway behind an app made by create_app."""
    gateway: Gateway = app.state.gateway
    return gateway
