"""Prometheus metrics of one gateway app (its own registry, so several apps can coexist)."""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pulse_bi.metrics import MetricSet

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

#: Paths reported by name; anything else is "other" so scanners cannot blow up the labels.
_KNOWN_PATHS = frozenset(
    [
        "/graphql",
        "/health",
        "/stats",
        "/metrics",
        "/query/sales/hourly",
        "/query/inventory/low-stock",
        "/query/ar/overdue",
    ]
)


class Metrics:
    """Requests, latencies, subscriptions, cache hits and upstream errors."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        m = MetricSet(self.registry, "gateway", _LATENCY_BUCKETS)
        self._operation_names: set[str] = set()
        self.requests = m.counter("http_requests", "HTTP requests served", "path", "status")
        self.latency = m.histogram("http_request_seconds", "HTTP request latency", "path")
        self.subscriptions = m.gauge("active_subscriptions", "Live subscriptions open")
        self.live_groups = m.gauge("live_groups", "Distinct live queries (shared executions)")
        self.connections = m.gauge("websocket_connections", "WebSocket connections open")
        self.cache_hits = m.counter("cache_hits", "Cache hits", "cache")
        self.cache_misses = m.counter("cache_misses", "Cache misses", "cache")
        self.upstream_errors = m.counter(
            "upstream_errors", "Failed named queries by reason", "reason"
        )
        self.upstream_seconds = m.histogram(
            "upstream_request_seconds", "Named-query round trip to the materializer"
        )
        self.live_refreshes = m.counter("live_refreshes", "Live-query executions after a change")
        self.live_messages = m.counter("live_messages", "Live results sent to subscribers")
        self.live_refresh_seconds = m.histogram(
            "live_refresh_seconds",
            "One live query's refresh (execute and encode) by its root field",
            "query",
        )
        self.live_charged_seconds = m.histogram(
            "live_charged_seconds",
            "What one live query's refresh was charged to its share of the time: the"
            " gateway's own time and the materializer's CPU time for its named queries",
            "query",
        )
        self.upstream_retries = m.counter(
            "upstream_retries", "Named queries asked again after no reply, by reason", "reason"
        )
        self.ws_dropped = m.counter(
            "ws_slow_clients_dropped",
            "WebSockets closed (1008) because the client did not read its frames",
        )
        self.notices = m.counter("change_notices", "Change notices and heartbeats received", "kind")
        self.operations = m.counter(
            "graphql_operations",
            "GraphQL operations by operation name, transport and outcome "
            "(ok, error, cached: from the response cache, not_modified: a 304)",
            "operation",
            "transport",
            "outcome",
        )
        self.operation_seconds = m.histogram(
            "graphql_operation_seconds", "GraphQL operation latency by operation name", "operation"
        )
        self.named_queries = m.counter(
            "named_queries",
            "Named queries asked by the resolvers, by query and source "
            "(cache, shared: joined a request in flight, upstream: asked the materializer)",
            "query",
            "source",
        )
        self.named_query_seconds = m.histogram(
            "named_query_seconds",
            "Named-query latency as the resolvers see it (cache hits included)",
            "query",
        )
        self.named_query_errors = m.counter(
            "named_query_errors",
            "Named queries that failed, by query and error code",
            "query",
            "code",
        )
        self.live_fanout = m.histogram(
            "live_fanout",
            "Subscribers one live-query result was sent to",
            buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000),
        )
        self.sse_streams = m.gauge("sse_streams", "GraphQL over SSE streams open")

    def operation(self, name: str | None, limit: int) -> str:
        """The label of an operation name: at most `limit` distinct names, then "other"."""
        label = name or "anonymous"
        known = self._operation_names
        if label in known:
            return label
        if len(known) >= limit:
            return "other"
        known.add(label)
        return label

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Pure ASGI middleware counting HTTP requests by path and status (cheap per request)."""

    def __init__(self, app: ASGIApp, metrics: Callable[[], Metrics | None]) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request through and record its status and duration."""
        metrics = self.metrics()
        if scope["type"] != "http" or metrics is None:
            await self.app(scope, receive, send)
            return
        path = scope["path"] if scope["path"] in _KNOWN_PATHS else "other"
        status = 500
        started = time.perf_counter()

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            metrics.requests.labels(path, str(status)).inc()
            metrics.latency.labels(path).observe(time.perf_counter() - started)


class Observation:
    """One GraphQL operation being answered: its name, outcome and latency."""

    __slots__ = ("_label", "_metrics", "_outcome", "_transport", "limit")

    def __init__(self, metrics: Metrics, transport: str, limit: int) -> None:
        self._metrics = metrics
        self._transport = transport
        self.limit = limit
        self._label = "unknown"
        self._outcome = "ok"

    def name(self, name: str | None) -> None:
        """The operation's name, once the document is known to be valid."""
        self._label = self._metrics.operation(name, self.limit)

    def error(self) -> None:
        """The answer carries errors."""
        self._outcome = "error"

    def cached(self, not_modified: bool = False) -> None:
        """Answered from the response cache, or with a 304."""
        self._outcome = "not_modified" if not_modified else "cached"

    def finish(self, seconds: float) -> None:
        """Count the operation and its latency."""
        self._metrics.operations.labels(self._label, self._transport, self._outcome).inc()
        self._metrics.operation_seconds.labels(self._label).observe(seconds)
