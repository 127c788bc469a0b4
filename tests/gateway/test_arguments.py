"""Every argument attacked, over GraphQL and REST; tokens and the operator endpoints."""

from __future__ import annotations

import time
from typing import Any

import httpx
import jwt
import pytest

from gateway.app import create_app, state
from gateway.settings import Settings
from tests.gateway.conftest import Canned, until

SECRET = "test-secret-long-enough-for-hs256-0123456789"
GR = "application/graphql-response+json"


async def gql(client: httpx.AsyncClient, query: str, **variables: Any) -> httpx.Response:
    return await client.post(
        "/graphql", json={"query": query, "variables": variables}, headers={"accept": GR}
    )


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert "errors" in body, body
    error: dict[str, Any] = body["errors"][0]
    return error


@pytest.mark.parametrize("limit", [-1, 0, 5001, 2**31 - 1])
@pytest.mark.parametrize(
    "query",
    [
        "query($n: Int) { arAging { byCustomer(limit: $n) { customerId } } }",
        "query($n: Int) { topProducts(limit: $n) { sku } }",
        "query($n: Int) { stockMovements(limit: $n) { sku } }",
        "query($n: Int) { rejectedEvents(limit: $n) { reason } }",
    ],
)
async def test_list_limits_out_of_range_are_bad_user_input(
    client: httpx.AsyncClient, canned: Canned, query: str, limit: int
) -> None:
    response = await gql(client, query, n=limit)
    error = error_of(response)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert f"limit must be between 1 and 5000, got {limit}" in error["message"]
    # Refused by the gateway: the materializer is not asked for a list it would refuse.
    assert not any(params.get("limit") == limit for _, params in canned.requests)


@pytest.mark.parametrize("limit", [2**31, 2**63, -(2**63) - 1, 10**30, 1.5, "10", True])
async def test_limits_that_are_not_32_bit_ints_are_refused_by_graphql(
    client: httpx.AsyncClient, limit: Any
) -> None:
    response = await gql(client, "query($n: Int) { topProducts(limit: $n) { sku } }", n=limit)
    assert response.status_code == 400
    assert error_of(response)["extensions"]["code"] == "BAD_USER_INPUT"


async def test_limit_literal_past_2_31_is_a_validation_error(client: httpx.AsyncClient) -> None:
    response = await gql(client, "{ topProducts(limit: 9223372036854775808) { sku } }")
    assert response.status_code == 400
    assert "non 32-bit signed integer" in error_of(response)["message"]


async def test_limits_in_range_are_answered(client: httpx.AsyncClient) -> None:
    response = await gql(client, "{ arAging { byCustomer(limit: 1) { customerId } } }")
    assert response.json() == {"data": {"arAging": {"byCustomer": [{"customerId": "C-1"}]}}}
    response = await gql(client, "{ topProducts(limit: 5000) { sku } }")
    assert response.json()["data"]["topProducts"][0]["sku"] == "SKU-1"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (1_764_064_800, "epoch values are milliseconds"),  # 2025-11-25 in seconds
        ("1764064800", "epoch values are milliseconds"),
        (0, "before 1973"),
        (-1, "before 1973"),
        (94_694_399_999, "before 1973"),
        (10**30, "out of range"),
        (1e308, "out of range"),
        ("NaN", "ISO-8601"),
        ("", "ISO-8601"),
        ("2026-11-25T10:00:00", "timezone offset"),
        ("0001-01-01T00:00:00+01:00", "out of range in UTC"),
        ("10000-01-01T00:00:00Z", "ISO-8601"),
        ("\uff12\uff10\uff12\uff16-11-25T10:00:00Z", "ISO-8601"),  # fullwidth digits
        ("x" * 100_000, "100000-character"),
        (True, "cannot represent"),
        ([1], "cannot represent"),
        ({"a": 1}, "cannot represent"),
    ],
)
async def test_bad_date_times_are_clear_errors(
    client: httpx.AsyncClient, value: Any, message: str
) -> None:
    response = await gql(
        client, "query($t: DateTime) { salesSummary(from: $t) { orders } }", t=value
    )
    assert response.status_code == 400
    error = error_of(response)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert message in error["message"]


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"),
        (94_694_400_000, "2026-11-25T10:00:00Z"),  # 1973-01-01 in ms: the first accepted
        ("2026-11-25T10:00:00-12:00", "9999-12-31T23:59:59.999999+14:00"),
    ],
)
async def test_extreme_but_valid_date_times_reach_the_materializer(
    client: httpx.AsyncClient, canned: Canned, start: Any, end: Any
) -> None:
    response = await gql(
        client,
        "query($f: DateTime, $t: DateTime) { salesSummary(from: $f, to: $t) { orders } }",
        f=start,
        t=end,
    )
    assert response.json() == {"data": {"salesSummary": {"orders": 3}}}, response.text


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("sku", "", 200),
        ("sku", "ü-ß-漢字-🙂", 200),
        ("sku", "x" * 256, 200),
        ("sku", "x" * 257, "257 characters long, more than 256"),
        ("warehouse", "\u0000", 200),
        ("warehouse", "y" * 1_000_000, "1000000 characters long"),
    ],
)
async def test_text_arguments_pass_through_or_are_refused_when_huge(
    client: httpx.AsyncClient, canned: Canned, field: str, value: str, expected: Any
) -> None:
    query = f"query($v: String) {{ stockLevels({field}: $v) {{ sku }} }}"
    response = await client.post("/graphql", json={"query": query, "variables": {"v": value}})
    if expected == 200:
        assert response.status_code == 200 and "errors" not in response.json()
        assert canned.requests[-1][1][field] == value
        return
    error = error_of(response)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert expected in error["message"]


@pytest.mark.parametrize(
    ("path", "params", "message"),
    [
        ("/query/sales/hourly", {"hours": ""}, "hours must be an integer"),
        ("/query/sales/hourly", {"hours": "0"}, "between 1 and 8784"),
        ("/query/sales/hourly", {"hours": "-5"}, "between 1 and 8784"),
        ("/query/sales/hourly", {"hours": str(2**63)}, "between 1 and 8784"),
        ("/query/sales/hourly", {"hours": "9" * 5000}, "hours must be an integer"),
        ("/query/sales/hourly", {"hours": "١٢"}, "hours must be an integer"),
        ("/query/sales/hourly", {"hours": " 12"}, "hours must be an integer"),
        ("/query/sales/hourly", {"hours": "1_2"}, "hours must be an integer"),
        ("/query/sales/hourly", {"hours": "12.0"}, "hours must be an integer"),
        ("/query/sales/hourly", {"channel": "c" * 300}, "300 characters long"),
        ("/query/ar/overdue", {"min_days_overdue": "1e3"}, "must be an integer"),
        ("/query/ar/overdue", {"min_days_overdue": str(2**31)}, "between 0 and 100000"),
        ("/query/ar/overdue", {"customer_id": "c" * 5000}, "5000 characters long"),
        ("/query/inventory/low-stock", {"warehouse": "w" * 257}, "257 characters long"),
    ],
)
async def test_bad_rest_parameters_are_400_with_the_reason(
    client: httpx.AsyncClient, path: str, params: dict[str, str], message: str
) -> None:
    response = await client.get(path, params=params)
    assert response.status_code == 400, response.text
    assert message in response.json()["errors"][0]["message"]


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/query/sales/hourly", {"hours": "8784", "channel": "ü🙂"}),
        ("/query/sales/hourly", {"hours": "1", "channel": ""}),
        ("/query/ar/overdue", {"as_of": "9999-12-31", "min_days_overdue": "0"}),
        ("/query/ar/overdue", {"as_of": "0001-01-01", "customer_id": "漢字"}),
    ],
)
async def test_extreme_valid_rest_parameters_are_answered(
    client: httpx.AsyncClient, path: str, params: dict[str, str]
) -> None:
    response = await client.get(path, params=params)
    assert response.status_code == 200, response.text


def token(**claims: Any) -> str:
    return jwt.encode({"sub": "ops", "exp": int(time.time()) + 60, **claims}, SECRET, "HS256")


@pytest.fixture
async def secured(settings: Settings, canned: Canned) -> Any:
    async def make(**changes: Any) -> Any:
        app = create_app(settings.replace(jwt_secret=SECRET, **changes))
        context = app.router.lifespan_context(app)
        await context.__aenter__()
        await until(lambda: state(app).upstream.connected)
        apps.append(context)
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")

    apps: list[Any] = []
    yield make
    for context in reversed(apps):
        await context.__aexit__(None, None, None)


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": str(int(time.time()) + 600)},
        {"exp": float("1e12"), "nbf": "0"},
        {"exp": int(time.time()) + 600, "iat": "1700000000"},
        {"exp": True},  # a JSON boolean: 1 to PyJWT, so already long expired
    ],
)
async def test_time_claims_must_be_numbers(secured: Any, claims: dict[str, Any]) -> None:
    async with await secured() as http:
        bad = jwt.encode({"sub": "x", **claims}, SECRET, "HS256")
        response = await http.post(
            "/graphql",
            json={"query": "{ pipeline { lag } }"},
            headers={"authorization": f"Bearer {bad}"},
        )
        assert response.status_code == 401
        message = response.json()["errors"][0]["message"]
        assert "must be a number" in message or "expired" in message
        good = await http.post(
            "/graphql",
            json={"query": "{ pipeline { lag } }"},
            headers={"authorization": f"Bearer {token(iat=int(time.time()))}"},
        )
        assert good.status_code == 200


@pytest.mark.parametrize("path", ["/stats", "/metrics"])
async def test_stats_and_metrics_need_a_token_when_auth_is_on(secured: Any, path: str) -> None:
    async with await secured() as http:
        missing = await http.get(path)
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"].startswith("Bearer")
        assert missing.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        wrong = await http.get(path, headers={"authorization": "Bearer not-a-jwt"})
        assert wrong.status_code == 401
        assert 'error="invalid_token"' in wrong.headers["www-authenticate"]
        good = await http.get(path, headers={"authorization": f"Bearer {token()}"})
        assert good.status_code == 200
    async with await secured(public_stats=True) as http:
        assert (await http.get(path)).status_code == 200
        assert (await http.get("/query/inventory/low-stock")).status_code == 401
