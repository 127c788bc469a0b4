"""``GET /export/<query>.<csv|xlsx|parquet>`` and the ``GET /export`` index (docs/EXPORTS.md).

Same authentication as the API (a bearer token when JWT is on); text parameters are
bounded as in the API; at most ``GATEWAY_EXPORT_CONCURRENCY`` exports run at once per
gateway (more get 429), each at most ``GATEWAY_EXPORT_MAX_ROWS`` rows.
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec
from prometheus_client import Counter
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from gateway.errors import BadRequest, GatewayError, InvalidToken, Unauthorized, gateway_error_body
from gateway.execution import encoder
from gateway.exports.params import parse_export_params
from gateway.exports.stream import Export, TooManyRows, file_name
from gateway.exports.table import table
from gateway.exports.writers import FORMATS, MEDIA_TYPES
from pulse_bi.contract import BY_NAME, QUERIES
from pulse_bi.contract.spec import describe_type

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger("gateway.exports")


@dataclass
class ExportState:
    """Per-app export bookkeeping: running exports and their metrics."""

    running: int
    exports: Counter
    rows: Counter


def _state(request: Request) -> ExportState:
    app_state = request.app.state
    found: ExportState | None = getattr(app_state, "exports", None)
    if found is None:
        gateway: Gateway = app_state.gateway
        registry = gateway.metrics.registry
        found = ExportState(
            running=0,
            exports=Counter(
                "gateway_exports",
                "Exports by query, format and outcome (ok, bad_request, failed, refused)",
                ["query", "format", "outcome"],
                registry=registry,
            ),
            rows=Counter(
                "gateway_export_rows", "Rows written by exports", ["format"], registry=registry
            ),
        )
        app_state.exports = found
    return found


def _json(body: Any, status: int = 200) -> Response:
    return Response(encoder.encode(body), status, media_type="application/json")


def _error(exc: GatewayError) -> Response:
    response = _json(gateway_error_body(exc), exc.status)
    if isinstance(exc, Unauthorized):
        error = ', error="invalid_token"' if isinstance(exc, InvalidToken) else ""
        response.headers["WWW-Authenticate"] = f'Bearer realm="pulse-bi"{error}'
    return response


async def export(request: Request) -> Response:
    """Stream one named query's rows as CSV, XLSX or Parquet."""
    gateway: Gateway = request.app.state.gateway
    state = _state(request)
    target = request.path_params["target"]
    name, dot, fmt = target.rpartition(".")
    spec = BY_NAME.get(name)
    label_query = name if spec is not None else "unknown"
    label_format = fmt if fmt in FORMATS else "unknown"
    try:
        await gateway.auth.from_header(request.headers.get("authorization"))
        if not dot or fmt not in FORMATS:
            raise BadRequest(
                f"ask /export/<query>.<format>, format one of {', '.join(FORMATS)};"
                f" got {target[:60]!r}"
            )
        if spec is None:
            raise BadRequest(f"unknown query {name[:60]!r}; known: {', '.join(BY_NAME)}")
        params = parse_export_params(
            spec, request.query_params.multi_items(), gateway.settings.export_max_rows
        )
    except GatewayError as exc:
        state.exports.labels(label_query, label_format, "bad_request").inc()
        return _error(exc)
    if state.running >= gateway.settings.export_concurrency:
        state.exports.labels(label_query, label_format, "refused").inc()
        response = _json(
            {
                "error": {
                    "code": "TOO_MANY_EXPORTS",
                    "message": f"{state.running} exports are running, the most this gateway"
                    " runs at once (GATEWAY_EXPORT_CONCURRENCY); try again shortly",
                }
            },
            429,
        )
        response.headers["Retry-After"] = "5"
        return response
    state.running += 1
    job = Export(gateway.upstream.request, params, fmt, gateway.settings.export_max_rows)
    try:
        await job.open()
    except (GatewayError, TooManyRows) as exc:
        state.running -= 1
        state.exports.labels(label_query, label_format, "bad_request").inc()
        error = exc if isinstance(exc, GatewayError) else BadRequest(str(exc))
        return _error(error)
    except BaseException:
        state.running -= 1
        raise

    released = False

    def release() -> None:
        # Once, whether the body ran to its end, failed, or never started (a client that
        # left before the response began: then the body is only garbage-collected).
        nonlocal released
        if not released:
            released = True
            state.running -= 1
            job.writer.close()

    async def body() -> Any:
        outcome = "failed"
        try:
            async for chunk in job.chunks():
                yield chunk
            outcome = "ok"
        except (GatewayError, TooManyRows) as exc:
            # Headers are sent: the only honest signal left is an incomplete response.
            log.warning("export %s.%s cut off after %d rows: %s", name, fmt, job.rows, exc)
            raise
        finally:
            release()
            state.exports.labels(name, fmt, outcome).inc()
            state.rows.labels(fmt).inc(job.rows)

    filename = file_name(params, fmt)
    stream = body()
    weakref.finalize(stream, release)
    return StreamingResponse(
        stream,
        media_type=MEDIA_TYPES[fmt],
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


def index_body(root: str = "") -> dict[str, Any]:
    """Every exportable query: formats, parameters and its export URLs."""
    queries = []
    for spec in QUERIES:
        parameters = [
            {
                "name": info.encode_name,
                "type": describe_type(info.type),
                "required": info.required and not (spec.window and info.name in spec.window),
            }
            for info in msgspec.structs.fields(spec.params)
        ]
        queries.append(
            {
                "query": spec.name,
                "field": spec.field,
                "description": spec.description,
                "parameters": parameters,
                "columns": [
                    {"name": c.name, "header": c.header, "type": c.kind}
                    for c in table(spec).columns
                ],
                "urls": {fmt: f"{root}/export/{spec.name}.{fmt}" for fmt in FORMATS},
            }
        )
    return {"formats": list(FORMATS), "queries": queries}


async def index(request: Request) -> Response:
    """The export index (no data in it, so no token needed)."""
    return _json(index_body(request.scope.get("root_path", "").rstrip("/")))


def routes() -> list[BaseRoute]:
    """The export routes."""
    return [
        Route("/export", index, methods=["GET"]),
        Route("/export/{target}", export, methods=["GET"]),
    ]
