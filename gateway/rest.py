"""Seed-compatible REST: /health, /stats, /metrics and the three /query/… endpoints."""

from __future__ import annotations

import datetime as dt
import re
import time
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from gateway.errors import BadRequest, GatewayError, InvalidToken, Unauthorized, gateway_error_body
from gateway.execution import encoder
from gateway.limits import check_text_params
from gateway.scalars import UTC
from pulse_bi.contract import to_wire
from pulse_bi.contract.registry import PipelineRow

if TYPE_CHECKING:
    from gateway.app import Gateway

_INTEGER = re.compile(r"-?[0-9]+")


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return Response(encoder.encode(body), status, media_type="application/json")


def _rows(data: Any) -> Any:
    """Typed rows as REST sends them: money as exact JSON numbers (like the GraphQL Money
    scalar), times as ISO-8601 with ``+00:00``, dates as ``YYYY-MM-DD`` (docs/API.md)."""
    return to_wire(data, exact_numbers=True)


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    # ASCII digits only: int() would also take "٣", " 3 " and "1_000".
    if len(raw) > 20 or not _INTEGER.fullmatch(raw):
        raise BadRequest(f"{name} must be an integer, got {raw[:40]!r}")
    value = int(raw)
    if not low <= value <= high:
        raise BadRequest(f"{name} must be between {low} and {high}, got {value}")
    return value


async def _named(request: Request, name: str, params: dict[str, Any]) -> Response:
    gateway: Gateway = request.app.state.gateway
    started = time.perf_counter()
    try:
        await gateway.auth.from_header(request.headers.get("authorization"))
        check_text_params(params)
        result = await gateway.upstream.query(name, params)
    except GatewayError as exc:
        body = gateway_error_body(exc)
        body["execution_time_ms"] = _ms(started)
        return _json(body, exc.status)
    rows = _rows(result.data)
    return _json(
        {
            "query": name,
            "params": {k: v for k, v in params.items() if v is not None},
            "data": rows,
            "count": len(rows) if isinstance(rows, list) else 1,
            "version": result.version,
            "execution_time_ms": _ms(started),
        }
    )


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000.0, 3)


async def sales_hourly(request: Request) -> Response:
    """Sales per hour over the last `hours` hours (default 24), the current hour included."""
    try:
        hours = _int_param(request, "hours", 24, 1, 24 * 366)
    except BadRequest as exc:
        return _json(gateway_error_body(exc), 400)
    end = dt.datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + dt.timedelta(hours=1)
    start = end - dt.timedelta(hours=hours)
    params: dict[str, Any] = {"from": start.isoformat(), "to": end.isoformat()}
    if request.query_params.get("channel"):
        params["channel"] = request.query_params["channel"]
    params["site"] = request.query_params.get("site")
    return await _named(request, "sales_by_hour", params)


async def inventory_low_stock(request: Request) -> Response:
    """Items at or below their reorder point."""
    params = {
        "warehouse": request.query_params.get("warehouse"),
        "site": request.query_params.get("site"),
    }
    return await _named(request, "low_stock", params)


async def ar_overdue(request: Request) -> Response:
    """Open invoices at least one day overdue (as of today unless `as_of`)."""
    try:
        min_days = _int_param(request, "min_days_overdue", 1, 0, 100_000)
    except BadRequest as exc:
        return _json(gateway_error_body(exc), 400)
    params = {
        "as_of": request.query_params.get("as_of"),
        "min_days_overdue": min_days,
        "customer_id": request.query_params.get("customer_id"),
        "site": request.query_params.get("site"),
    }
    return await _named(request, "overdue_invoices", params)


async def health(request: Request) -> Response:
    """200 when NATS is connected and the materializer answers; 503 with the reason otherwise."""
    gateway: Gateway = request.app.state.gateway
    started = time.perf_counter()
    upstream = gateway.upstream
    checks: dict[str, Any] = {"nats": upstream.connected, "materializer": False}
    try:
        reply = await upstream.request(
            # /health answers at once and honestly: no retries.
            "pipeline",
            {},
            timeout=min(1.0, upstream.settings.query_timeout),
            retries=0,
        )
    except GatewayError as exc:
        body = {
            "status": "unhealthy",
            "reason": exc.message,
            "checks": checks,
            "execution_time_ms": _ms(started),
        }
        return _json(body, 503)
    checks["materializer"] = True
    body = {
        "status": "ok",
        "checks": checks,
        "version": reply.version,
        "execution_time_ms": _ms(started),
    }
    # The materializer answers but reports a problem (lost events, a fault, a replaced
    # stream): the gateway still serves what it has, so 200 with the materializer's reason.
    if gateway.alerts is not None:
        # A receiver that keeps failing: visible here, never blocking evaluation.
        alerts = body["alerts"] = gateway.alerts.health()
        failing = alerts["failing_receivers"]
        if failing:
            body["status"] = "degraded"
            body["reason"] = "alert delivery failing: " + "; ".join(
                f"{name}: {why}" for name, why in failing.items()
            )
    state = reply.data if isinstance(reply.data, PipelineRow) else None
    upstream_status = state.status if state is not None else None
    if state is not None and upstream_status in ("degraded", "unavailable"):
        body["status"] = "degraded"
        body["reason"] = f"materializer {upstream_status}: {state.reason}"
        checks["materializer_status"] = upstream_status
    return _json(body)


async def _refused(request: Request) -> Response | None:
    """401 for /stats and /metrics without a valid token, unless GATEWAY_PUBLIC_STATS."""
    gateway: Gateway = request.app.state.gateway
    if gateway.settings.public_stats:
        return None
    try:
        await gateway.auth.from_header(request.headers.get("authorization"))
    except Unauthorized as exc:
        error = ', error="invalid_token"' if isinstance(exc, InvalidToken) else ""
        response = _json(gateway_error_body(exc), exc.status)
        response.headers["WWW-Authenticate"] = f'Bearer realm="pulse-bi"{error}'
        return response
    return None


async def stats(request: Request) -> Response:
    """Counters of this gateway process."""
    refused = await _refused(request)
    if refused is not None:
        return refused
    gateway: Gateway = request.app.state.gateway
    started = time.perf_counter()
    body = {
        "uptime_s": round(time.monotonic() - gateway.started, 3),
        "nats_connected": gateway.upstream.connected,
        "data_version": gateway.versions.seen,
        "change_notices": gateway.versions.notices,
        "missed_notices_detected": gateway.versions.gaps,
        "websocket_connections": len(gateway.connections),
        "live": gateway.hub.stats(),
        "query_cache": gateway.upstream.cache_stats(),
        "response_cache": {
            "entries": len(gateway.responses.entries),
            "hits": gateway.responses.hits,
        },
        "execution_time_ms": 0.0,
    }
    body["execution_time_ms"] = _ms(started)
    return _json(body)


async def metrics(request: Request) -> Response:
    """Prometheus text exposition."""
    refused = await _refused(request)
    if refused is not None:
        return refused
    gateway: Gateway = request.app.state.gateway
    return Response(gateway.metrics.render(), media_type="text/plain; version=0.0.4")


def routes() -> list[BaseRoute]:
    """The REST routes."""
    return [
        Route("/health", health),
        Route("/stats", stats),
        Route("/metrics", metrics),
        Route("/query/sales/hourly", sales_hourly),
        Route("/query/inventory/low-stock", inventory_low_stock),
        Route("/query/ar/overdue", ar_overdue),
    ]
