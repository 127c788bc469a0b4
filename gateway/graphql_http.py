"""GraphQL over HTTP (GET and POST) per the GraphQL-over-HTTP spec, plus GraphiQL (graphiql.py).

Responses of successful queries are cached as encoded bytes, keyed by the document,
variables, caller scope and the generations of the aggregates the query reads: a
dashboard refreshing between two changes gets its bytes without any execution.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec
from graphql import OperationType
from starlette.requests import Request
from starlette.responses import Response

from gateway.caching import cache_control, matches
from gateway.errors import (
    BadRequest,
    GatewayError,
    InvalidToken,
    Unauthorized,
    gateway_error_body,
    request_error,
)
from gateway.execution import COST_LIMIT_EXCEEDED, encoder
from gateway.graphiql import page_response
from gateway.metrics import Observation
from gateway.persisted import PersistedQueryError
from gateway.schema import Context
from gateway.security import scope_of
from pulse_bi.tracing import set_error

if TYPE_CHECKING:
    from gateway.app import Gateway

GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
JSON = "application/json"

_variables_encoder = msgspec.json.Encoder(order="sorted")


class UnsupportedMediaType(BadRequest):
    """POST bodies must be JSON."""

    status = 415


class PayloadTooLarge(BadRequest):
    """A body far larger than any document and its variables may be."""

    status = 413


#: Largest POST body: the document limit leaves room for variables, but not for abuse.
MAX_BODY_BYTES = 1 << 20
#: Deepest nesting of JSON values in `variables` and `extensions` (no argument needs more).
MAX_JSON_DEPTH = 32


class Params(msgspec.Struct):
    """The parameters of one GraphQL request (`query` may be left out for a persisted hash)."""

    query: str | None
    variables: dict[str, Any] | None
    operation_name: str | None
    extensions: dict[str, Any] | None = None


@dataclass(slots=True)
class Outcome:
    """The answer to one operation: body, status (for the negotiated media) and headers."""

    body: bytes
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


def negotiate(accept: str | None) -> str | None:
    """The response media type for an Accept header; None when nothing acceptable is asked."""
    if not accept:
        return JSON
    best: tuple[float, int, str] | None = None
    for index, part in enumerate(accept.split(",")):
        media, *options = (p.strip() for p in part.split(";"))
        media = media.lower()
        q = 1.0
        for option in options:
            if option.startswith("q="):
                try:
                    q = float(option[2:])
                except ValueError:
                    q = 0.0
        if media == GRAPHQL_RESPONSE_JSON:
            chosen = GRAPHQL_RESPONSE_JSON
        elif media in (JSON, "*/*", "application/*"):
            chosen = JSON
        else:
            continue
        if q > 0 and (best is None or q > best[0]):
            best = (q, index, chosen)
    return best[2] if best else None


def wants_event_stream(accept: str) -> bool:
    """Whether an Accept header asks for GraphQL over SSE: `text/event-stream` accepted, and
    no JSON media type named (a client that lists JSON gets JSON; `*/*` does not count)."""
    if "text/event-stream" not in accept.lower():
        return False
    stream = False
    for part in accept.lower().split(","):
        media, *options = (p.strip() for p in part.split(";"))
        if any(o.replace(" ", "") in ("q=0", "q=0.0", "q=0.00", "q=0.000") for o in options):
            continue
        if media in (JSON, GRAPHQL_RESPONSE_JSON):
            return False
        stream = stream or media == "text/event-stream"
    return stream


class ResponseCache:
    """Encoded responses by (document, variables, scope, media), one per request kind.

    Each entry is stamped with the data generations and the hour it was built at, and
    serves only while they hold. Keying by the stamp instead would fill the cache with
    dead results under ingest (every batch makes a new generation) until the LRU bound.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.entries: OrderedDict[tuple[Any, ...], tuple[Any, bytes]] = OrderedDict()
        self.hits = 0

    def get(self, key: tuple[Any, ...], stamp: Any) -> bytes | None:
        """The cached body when it was built at ``stamp``, refreshing its LRU place."""
        entry = self.entries.get(key)
        if entry is None or entry[0] != stamp:
            return None
        self.entries.move_to_end(key)
        self.hits += 1
        return entry[1]

    def put(self, key: tuple[Any, ...], stamp: Any, body: bytes) -> None:
        """Remember a body built at ``stamp``, replacing an older one, evicting the LRU."""
        if not self.size:
            return
        self.entries[key] = (stamp, body)
        self.entries.move_to_end(key)
        if len(self.entries) > self.size:
            self.entries.popitem(last=False)


async def graphql_http_endpoint(request: Request) -> Response:
    """`/graphql` over HTTP (and GraphQL over SSE when the client accepts an event stream)."""
    gateway: Gateway = request.app.state.gateway
    accept = request.headers.get("accept", "")
    if (
        request.method == "GET"
        and "query" not in request.query_params
        and "extensions" not in request.query_params
        and "text/html" in accept
        and gateway.settings.graphiql
        and gateway.persisted.graphiql
    ):
        return page_response(request.scope.get("root_path", ""))
    if wants_event_stream(accept):
        from gateway.sse import sse_endpoint

        return await sse_endpoint(request)
    media = negotiate(request.headers.get("accept"))
    if media is None:
        body = gateway_error_body(
            BadRequest(f"Not acceptable: ask for {GRAPHQL_RESPONSE_JSON} or {JSON}")
        )
        return Response(encoder.encode(body), 406, media_type=JSON)
    attributes = {"http.request.method": request.method, "url.path": "/graphql"}
    with gateway.tracing.span("graphql", request.headers, True, attributes) as span:
        try:
            claims = await gateway.auth.from_header(request.headers.get("authorization"))
            raw = await read_body(request)
            if isinstance(raw, list):
                return await run_batch(gateway, raw, claims, media)
            params = to_params(raw)
        except GatewayError as exc:
            set_error(span, exc.message)
            return error_response(exc, media)
        if span is not None and params.operation_name:
            span.set_attribute("graphql.operation.name", params.operation_name[:200])
        outcome = await run(
            gateway, params, claims, media, request.method, request.headers.get("if-none-match")
        )
        if span is not None:
            span.set_attribute("http.response.status_code", outcome.status)
        return Response(outcome.body, outcome.status, outcome.headers, media)


def error_response(exc: GatewayError, media: str) -> Response:
    """The HTTP answer to a request that failed before execution."""
    headers = {}
    if isinstance(exc, Unauthorized):
        error = ', error="invalid_token"' if isinstance(exc, InvalidToken) else ""
        headers["WWW-Authenticate"] = f'Bearer realm="pulse-bi"{error}'
    return Response(encoder.encode(gateway_error_body(exc)), exc.status, headers, media)


async def read_body(request: Request) -> Any:
    """The request's parameters: a GET query string as a dict, or the decoded JSON POST body."""
    if request.method == "GET":
        raw: dict[str, Any] = dict(request.query_params)
        for name in ("variables", "extensions"):
            if raw.get(name):
                try:
                    raw[name] = msgspec.json.decode(raw[name])
                except msgspec.DecodeError:
                    raise BadRequest(f"{name} must be a JSON object") from None
                except RecursionError:
                    raise BadRequest(f"{name} is nested too deeply") from None
            elif name in raw:
                raw[name] = None
        return raw
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != JSON:
        raise UnsupportedMediaType("POST bodies must be sent as Content-Type: application/json")
    settings = request.app.state.gateway.settings
    limit = max(MAX_BODY_BYTES, 4 * settings.max_document_bytes)
    if settings.batching:
        limit *= settings.max_batch_size
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the request body is larger than {limit} bytes")
    body = await request.body()
    if len(body) > limit:
        raise PayloadTooLarge(f"the request body is larger than {limit} bytes")
    if not body.strip():
        raise BadRequest('the request body is empty; send {"query": ...}')
    try:
        raw = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("the request body is nested too deeply to be read") from None
    if isinstance(raw, list) and settings.batching:
        return raw
    if not isinstance(raw, dict):
        hint = " (batching is off: GATEWAY_BATCHING)" if isinstance(raw, list) else ""
        raise BadRequest(f"the request body must be a JSON object{hint}")
    return raw


async def read_params(request: Request) -> Params:
    """Query, variables, operation name and extensions of a single (not batched) request."""
    raw = await read_body(request)
    if not isinstance(raw, dict):
        raise BadRequest("the request body must be a JSON object")
    return to_params(raw)


def to_params(raw: dict[str, Any]) -> Params:
    """Check the parameter types of one request object."""
    query = raw.get("query")
    extensions = raw.get("extensions")
    if extensions is not None and not isinstance(extensions, dict):
        raise BadRequest("'extensions' must be an object or null")
    if not isinstance(query, str) and not (
        query is None and extensions is not None and "persistedQuery" in extensions
    ):
        raise BadRequest("'query' must be a string holding a GraphQL document")
    variables = raw.get("variables")
    if variables is not None and not isinstance(variables, dict):
        raise BadRequest("'variables' must be an object or null")
    for name in ("variables", "extensions"):
        if json_depth(raw.get(name)) > MAX_JSON_DEPTH:
            raise BadRequest(f"'{name}' is nested more than {MAX_JSON_DEPTH} levels deep")
    operation_name = raw.get("operationName")
    if operation_name is not None and not isinstance(operation_name, str):
        raise BadRequest("'operationName' must be a string or null")
    return Params(query, variables, operation_name, extensions)


def json_depth(value: Any) -> int:
    """How deeply a decoded JSON value nests (iterative: safe on any depth)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            items: Any = item.values()
        elif isinstance(item, list):
            items = item
        else:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in items)
    return deepest


def _request_errors(errors: list[dict[str, Any]], media: str) -> Outcome:
    # application/json keeps the legacy 200; the new media type says what went wrong.
    status = 400 if media == GRAPHQL_RESPONSE_JSON else 200
    return Outcome(encoder.encode({"errors": errors}), status)


class CostBudget:
    """What is left of GATEWAY_MAX_COST for the operations of one batch."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.spent = 0

    def charge(self, cost: int) -> dict[str, Any] | None:
        """Spend `cost`, or return the error of an operation the batch cannot afford."""
        if self.spent + cost > self.limit:
            message = (
                f"This batch's operations cost {self.spent + cost} together, more than "
                f"{self.limit} (GATEWAY_MAX_COST): send fewer or cheaper operations."
            )
            return {
                "message": message,
                "extensions": {"code": COST_LIMIT_EXCEEDED, "cost": cost, "maxCost": self.limit},
            }
        self.spent += cost
        return None


async def run_batch(
    gateway: Gateway, items: list[Any], claims: dict[str, Any], media: str
) -> Response:
    """A JSON array of operations: one JSON array of results, in order (docs/GATEWAY.md).

    The operations run concurrently; their costs add up under GATEWAY_MAX_COST in the
    order sent, so a batch cannot buy more work than one operation may.
    """
    limit = gateway.settings.max_batch_size
    if not items:
        return error_response(BadRequest("the batch is empty: send at least one operation"), media)
    if len(items) > limit:
        return error_response(
            BadRequest(f"the batch has {len(items)} operations, more than {limit}"), media
        )
    budget = CostBudget(gateway.settings.max_cost)

    async def one(item: Any) -> bytes:
        if not isinstance(item, dict):
            error = request_error("each operation of a batch must be a JSON object", "BAD_REQUEST")
            return encoder.encode({"errors": [error]})
        try:
            params = to_params(item)
        except GatewayError as exc:
            return encoder.encode(gateway_error_body(exc))
        outcome = await run(gateway, params, claims, media, "POST", None, budget)
        return outcome.body

    bodies = await asyncio.gather(*(one(item) for item in items))
    return Response(b"[" + b",".join(bodies) + b"]", 200, media_type=media)


async def run(
    gateway: Gateway,
    params: Params,
    claims: dict[str, Any],
    media: str,
    method: str,
    if_none_match: str | None = None,
    budget: CostBudget | None = None,
) -> Outcome:
    """Resolve a persisted query, prepare, pick the operation, answer from a cache or execute."""
    started = time.perf_counter()
    observed = Observation(gateway.metrics, "http", gateway.settings.metrics_max_operations)
    outcome = await _run(gateway, params, claims, media, method, if_none_match, budget, observed)
    observed.finish(time.perf_counter() - started)
    return outcome


async def _run(
    gateway: Gateway,
    params: Params,
    claims: dict[str, Any],
    media: str,
    method: str,
    if_none_match: str | None,
    budget: CostBudget | None,
    observed: Observation,
) -> Outcome:
    try:
        query = gateway.persisted.resolve(params.query, params.extensions)
    except PersistedQueryError as exc:
        observed.error()
        return _request_errors([request_error(exc.message, exc.code)], media)
    except GatewayError as exc:
        observed.error()
        return Outcome(encoder.encode(gateway_error_body(exc)), exc.status)
    executor = gateway.executor
    prepared = executor.prepare(query)
    kind = prepared.kind(params.operation_name)
    if method == "GET" and kind not in (None, OperationType.QUERY):
        # GraphQL over HTTP: only queries over GET, whatever else is wrong with the request.
        body = {"errors": [{"message": "Only queries can be sent with GET; use POST."}]}
        observed.error()
        return Outcome(encoder.encode(body), 405, {"Allow": "POST"})
    if prepared.errors:
        observed.error()
        return _request_errors(prepared.errors, media)
    gateway.persisted.register(query, params.extensions)
    operation = prepared.operation(params.operation_name)
    if isinstance(operation, dict):
        observed.error()
        return _request_errors([operation], media)
    if operation.kind is not OperationType.QUERY:
        message = (
            "Subscriptions are served over WebSocket at /graphql (graphql-transport-ws) "
            "and over Server-Sent Events (Accept: text/event-stream)."
        )
        observed.error()
        return _request_errors([{"message": message, "extensions": {"code": "BAD_REQUEST"}}], media)
    observed.name(operation.node.name.value if operation.node.name else None)
    coerced: Any = None
    if budget is not None:
        coerced = executor.coerce(operation, params.variables)
        if isinstance(coerced, list):
            observed.error()
            return _request_errors(coerced, media)
        refused = budget.charge(executor.cost(operation, coerced))
        if refused is not None:
            observed.error()
            return _request_errors([refused], media)
    generations = gateway.versions.key(operation.dependencies)
    key = None
    headers: dict[str, str] = {}
    # The hour: default time windows ("last 24 h", "today") move with it.
    stamp = (generations, int(time.time() // 3600))
    if generations is not None:
        key = (
            query,
            params.operation_name,
            _variables_encoder.encode(params.variables),
            scope_of(claims),
            media,
        )
        if method == "GET":
            tag = gateway.etags.tag(key, stamp)
            headers = {
                "ETag": tag,
                "Cache-Control": cache_control(gateway.settings.auth_enabled),
                "Vary": "Accept, Authorization" if gateway.settings.auth_enabled else "Accept",
            }
            if matches(if_none_match, tag):
                observed.cached(not_modified=True)
                return Outcome(b"", 304, headers)
        cached = gateway.responses.get(key, stamp)
        if cached is not None:
            gateway.metrics.cache_hits.labels("response").inc()
            observed.cached()
            return Outcome(cached, 200, headers)
        gateway.metrics.cache_misses.labels("response").inc()
    if coerced is None:
        coerced = executor.coerce(operation, params.variables)
        if isinstance(coerced, list):
            observed.error()
            return _request_errors(coerced, media)
    context = Context(gateway.upstream, gateway.versions, claims)
    answer = await gateway.answerer.answer_request(prepared, operation, coerced, context, params)
    if key is not None and answer.cacheable:
        gateway.responses.put(key, stamp, answer.body)
    if not answer.cacheable:
        observed.error()
        headers = {}
    status = answer.status if media == GRAPHQL_RESPONSE_JSON else 200
    return Outcome(answer.body, status, headers)
