"""GraphQL over HTTP (GET and POST) per the GraphQL-over-HTTP spec, plus GraphiQL (graphiql.py).

Responses of successful queries are cached as encoded bytes, keyed by the document,
variables, caller scope and the generations of the aggregates the query reads: a
dashboard refreshing between two changes gets its bytes without any execution.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import msgspec
from graphql import OperationType
from starlette.requests import Request
from starlette.responses import Response

from gateway.errors import BadRequest, GatewayError, InvalidToken, Unauthorized, gateway_error_body
from gateway.execution import encoder
from gateway.graphiql import page_response
from gateway.schema import Context
from gateway.security import scope_of

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
    """The parameters of one GraphQL request."""

    query: str
    variables: dict[str, Any] | None
    operation_name: str | None


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
    """`/graphql` over HTTP."""
    gateway: Gateway = request.app.state.gateway
    if (
        request.method == "GET"
        and "query" not in request.query_params
        and "text/html" in request.headers.get("accept", "")
        and gateway.settings.graphiql
    ):
        return page_response(request.scope.get("root_path", ""))
    media = negotiate(request.headers.get("accept"))
    if media is None:
        body = gateway_error_body(
            BadRequest(f"Not acceptable: ask for {GRAPHQL_RESPONSE_JSON} or {JSON}")
        )
        return Response(encoder.encode(body), 406, media_type=JSON)
    try:
        claims = await gateway.auth.from_header(request.headers.get("authorization"))
        params = await read_params(request)
    except GatewayError as exc:
        return error_response(exc, media)
    return await run(gateway, params, claims, media, request.method)


def error_response(exc: GatewayError, media: str) -> Response:
    """The HTTP answer to a request that failed before execution."""
    headers = {}
    if isinstance(exc, Unauthorized):
        error = ', error="invalid_token"' if isinstance(exc, InvalidToken) else ""
        headers["WWW-Authenticate"] = f'Bearer realm="pulse-bi"{error}'
    return Response(encoder.encode(gateway_error_body(exc)), exc.status, headers, media)


async def read_params(request: Request) -> Params:
    """Query, variables and operation name from a GET query string or a JSON POST body."""
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
    else:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != JSON:
            raise UnsupportedMediaType("POST bodies must be sent as Content-Type: application/json")
        limit = max(MAX_BODY_BYTES, 4 * request.app.state.gateway.settings.max_document_bytes)
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
        if not isinstance(raw, dict):
            raise BadRequest("the request body must be a JSON object")
    query = raw.get("query")
    if not isinstance(query, str):
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
    extensions = raw.get("extensions")
    if extensions is not None and not isinstance(extensions, dict):
        raise BadRequest("'extensions' must be an object or null")
    return Params(query, variables, operation_name)


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


def _request_errors(errors: list[dict[str, Any]], media: str) -> Response:
    # application/json keeps the legacy 200; the new media type says what went wrong.
    status = 400 if media == GRAPHQL_RESPONSE_JSON else 200
    return Response(encoder.encode({"errors": errors}), status, media_type=media)


async def run(
    gateway: Gateway, params: Params, claims: dict[str, Any], media: str, method: str
) -> Response:
    """Prepare, pick the operation, answer from the cache or execute."""
    executor = gateway.executor
    prepared = executor.prepare(params.query)
    kind = prepared.kind(params.operation_name)
    if method == "GET" and kind not in (None, OperationType.QUERY):
        # GraphQL over HTTP: only queries over GET, whatever else is wrong with the request.
        body = {"errors": [{"message": "Only queries can be sent with GET; use POST."}]}
        return Response(encoder.encode(body), 405, {"Allow": "POST"}, media)
    if prepared.errors:
        return _request_errors(prepared.errors, media)
    operation = prepared.operation(params.operation_name)
    if isinstance(operation, dict):
        return _request_errors([operation], media)
    if operation.kind is not OperationType.QUERY:
        message = "Subscriptions are served over WebSocket at /graphql (graphql-transport-ws)."
        return _request_errors([{"message": message, "extensions": {"code": "BAD_REQUEST"}}], media)
    generations = gateway.versions.key(operation.dependencies)
    key = None
    # The hour: default time windows ("last 24 h", "today") move with it.
    stamp = (generations, int(time.time() // 3600))
    if generations is not None:
        key = (
            params.query,
            params.operation_name,
            _variables_encoder.encode(params.variables),
            scope_of(claims),
            media,
        )
        cached = gateway.responses.get(key, stamp)
        if cached is not None:
            gateway.metrics.cache_hits.labels("response").inc()
            return Response(cached, 200, media_type=media)
        gateway.metrics.cache_misses.labels("response").inc()
    coerced = executor.coerce(operation, params.variables)
    if isinstance(coerced, list):
        return _request_errors(coerced, media)
    context = Context(gateway.upstream, gateway.versions, claims)
    answer = await gateway.answerer.answer(
        prepared.document,  # type: ignore[arg-type]
        context,
        params.variables,
        params.operation_name,
        executor.cost(operation, coerced),
    )
    if key is not None and answer.cacheable:
        gateway.responses.put(key, stamp, answer.body)
    status = answer.status if media == GRAPHQL_RESPONSE_JSON else 200
    return Response(answer.body, status, media_type=media)
