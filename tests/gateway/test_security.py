"""JWT on HTTP and WebSocket, query limits, introspection switch and CORS."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
import websockets

from gateway.app import create_app, state
from gateway.settings import Settings
from tests.gateway.conftest import Canned, until

SECRET = "test-secret-long-enough-for-hs256-0123456789"


def token(secret: str = SECRET, **claims: Any) -> str:
    return jwt.encode({"sub": "analyst", "exp": int(time.time()) + 60, **claims}, secret, "HS256")


@pytest.fixture
async def secured(settings: Settings, canned: Canned) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(
        settings.replace(
            jwt_secret=SECRET,
            max_depth=4,
            max_aliases=3,
            max_tokens=200,
            max_document_bytes=2000,
            introspection=False,
            cors_origins=("http://dash.example",),
        )
    )
    async with app.router.lifespan_context(app):
        await until(lambda: state(app).upstream.connected)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            yield http


QUERY = {"query": "{ pipeline { lag } }"}


@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        (None, "missing bearer token"),
        ("Basic abc", "must be 'Bearer <JWT>'"),
        ("Bearer not-a-jwt", "invalid"),
        (f"Bearer {token(secret='another-secret-that-is-long-enough-0123')}", "invalid"),
        (f"Bearer {token(exp=int(time.time()) - 10)}", "expired"),
    ],
)
async def test_bad_missing_or_expired_token_is_401(
    secured: httpx.AsyncClient, authorization: str | None, message: str
) -> None:
    headers = {"authorization": authorization} if authorization else {}
    response = await secured.post("/graphql", json=QUERY, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    error = response.json()["errors"][0]
    assert message in error["message"]
    assert error["extensions"]["code"] == "UNAUTHENTICATED"


async def test_valid_token_is_answered(secured: httpx.AsyncClient) -> None:
    response = await secured.post(
        "/graphql", json=QUERY, headers={"authorization": f"Bearer {token()}"}
    )
    assert response.status_code == 200
    assert response.json() == {"data": {"pipeline": {"lag": 0}}}


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("{ arAging { byCustomer { customerId } buckets { total } } }", None),
        (
            "{ a: pipeline { lag } b: pipeline { lag } c: pipeline { lag } d: pipeline { lag } }",
            "4 aliases",
        ),
        ("fragment F on Query { arAging { byCustomer { customerId } } } { ...F }", None),
        ("{ pipeline { a { b { c { d } } } } }", "5 levels deep"),
        ("{ __schema { queryType { name } } }", "introspection"),
        ("{ pipeline { lag } }" + " " * 2000, "larger than 2000 bytes"),
        ("{ " + "pipeline { lag } " * 60 + "}", "tokens"),
    ],
)
async def test_limits_reject_hostile_documents_with_400(
    secured: httpx.AsyncClient, query: str, message: str | None
) -> None:
    response = await secured.post(
        "/graphql",
        json={"query": query},
        headers={
            "authorization": f"Bearer {token()}",
            "accept": "application/graphql-response+json",
        },
    )
    if message is None:
        assert response.status_code == 200, response.text
        return
    assert response.status_code == 400
    assert message in response.json()["errors"][0]["message"]


async def test_cors_allows_the_configured_origin_only(secured: httpx.AsyncClient) -> None:
    headers = {
        "origin": "http://dash.example",
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type",
    }
    allowed = await secured.options("/graphql", headers=headers)
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "http://dash.example"
    denied = await secured.options("/graphql", headers={**headers, "origin": "http://evil.example"})
    assert denied.status_code == 400
    assert "access-control-allow-origin" not in denied.headers


@pytest.fixture
def ws_server(settings: Settings, canned: Canned, server_factory: Any) -> Any:
    return server_factory(
        settings.replace(jwt_secret=SECRET, cors_origins=("http://dash.example",))
    )


async def close_code(ws: Any) -> int:
    with pytest.raises(websockets.ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), 5)
    return int(ws.close_code)


@pytest.mark.parametrize(
    ("protocol", "payload", "code"),
    [
        ("graphql-transport-ws", None, 4401),
        ("graphql-transport-ws", {"token": "garbage"}, 4403),
        ("graphql-transport-ws", {"token": token(exp=int(time.time()) - 5)}, 4403),
        ("graphql-ws", {}, 4401),
        ("graphql-ws", {"Authorization": "Bearer garbage"}, 4403),
    ],
)
async def test_websocket_init_without_valid_token_is_closed(
    ws_server: Any, protocol: str, payload: Any, code: int
) -> None:
    ws = await websockets.connect(ws_server.ws_url, subprotocols=[protocol])  # type: ignore[list-item]
    init: dict[str, Any] = {"type": "connection_init"}
    if payload is not None:
        init["payload"] = payload
    await ws.send(json.dumps(init))
    assert await close_code(ws) == code


@pytest.mark.parametrize("field", ["token", "Authorization"])
async def test_websocket_init_with_token_is_acknowledged(ws_server: Any, field: str) -> None:
    # Made here, not at collection: the token must still be valid when the test runs.
    payload = {field: token() if field == "token" else f"Bearer {token()}"}
    ws = await websockets.connect(
        ws_server.ws_url,
        subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
        origin="http://dash.example",  # type: ignore[arg-type]
    )
    await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
    assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"type": "connection_ack"}
    await ws.close()


@pytest.fixture
def jwks() -> Any:
    """A real JWKS document served over HTTP, and a function signing tokens with its key."""
    import http.server
    import threading

    from cryptography.hazmat.primitives.asymmetric import rsa
    from jwt.algorithms import RSAAlgorithm

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    body = json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()

    def sign(**claims: Any) -> str:
        payload = {"exp": int(time.time()) + 60, **claims}
        return jwt.encode(payload, key, "RS256", headers={"kid": "k1"})

    yield f"http://127.0.0.1:{httpd.server_port}/jwks.json", sign
    httpd.shutdown()


async def test_jwks_signed_tokens_are_accepted_and_forged_ones_refused(
    settings: Settings, canned: Canned, jwks: Any
) -> None:
    url, sign = jwks
    app = create_app(settings.replace(jwt_jwks_url=url, jwt_audience="pulse-bi"))
    async with app.router.lifespan_context(app):
        await until(lambda: state(app).upstream.connected)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            good = await http.post(
                "/graphql", json=QUERY, headers={"authorization": f"Bearer {sign(aud='pulse-bi')}"}
            )
            assert good.status_code == 200, good.text
            wrong_audience = await http.post(
                "/graphql", json=QUERY, headers={"authorization": f"Bearer {sign(aud='other')}"}
            )
            assert wrong_audience.status_code == 401
            hs256 = await http.post(
                "/graphql", json=QUERY, headers={"authorization": f"Bearer {token()}"}
            )
            assert hs256.status_code == 401


async def test_socket_is_closed_when_its_token_expires(
    settings: Settings, canned: Canned, server_factory: Any
) -> None:
    server = server_factory(settings.replace(jwt_secret=SECRET, ws_keepalive=0.1))
    ws = await websockets.connect(server.ws_url, subprotocols=["graphql-transport-ws"])  # type: ignore[list-item]
    short = jwt.encode({"exp": time.time() + 1.0}, SECRET, "HS256")
    await ws.send(json.dumps({"type": "connection_init", "payload": {"token": short}}))
    started = time.monotonic()
    with pytest.raises(websockets.ConnectionClosed):
        while True:
            if json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "ping":
                await ws.send('{"type": "pong"}')
    assert ws.close_code == 4403
    assert "expired" in (ws.close_reason or "")
    assert time.monotonic() - started >= 0.5
