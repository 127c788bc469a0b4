"""HTTP caching (ETag, 304, Cache-Control), compression and batching, over real HTTP."""

from __future__ import annotations

import gzip
import json
from typing import Any

import brotli
import httpx
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from gateway.app import state
from gateway.caching import matches
from gateway.compression import choose
from gateway.settings import Settings
from tests.clock import clear_of_the_hour
from tests.gateway.conftest import Canned, Server, app_client, until
from tests.gateway.test_security import SECRET, token

SALES = '{ salesSummary(from: "2026-11-25T00:00:00Z", to: "2026-11-26T00:00:00Z") { orders } }'
STOCK = "{ lowStock { sku onHand } }"
#: An answer far above the compression threshold.
BIG = "{ __schema { types { name description fields { name description } } } }"


async def known(server: Server, canned: Canned) -> Any:
    gateway = state(server.server.config.app)  # type: ignore[union-attr]
    await canned.heartbeat_until_known(gateway.versions)
    return gateway


@pytest.mark.slow
async def test_get_answers_carry_an_etag_and_revalidate_with_304_until_their_data_changes(
    settings: Settings, canned: Canned, server_factory: Any
) -> None:
    server = server_factory(settings)
    await known(server, canned)
    # Every query's tag holds the current hour: an hour turning would change them all.
    await clear_of_the_hour()
    async with httpx.AsyncClient(base_url=server.url) as http:
        first = await http.get("/graphql", params={"query": SALES})
        assert first.status_code == 200
        tag = first.headers["etag"]
        assert tag.startswith('W/"')
        assert first.headers["cache-control"] == "public, no-cache"
        assert "Accept" in first.headers["vary"]
        requests = len(canned.requests)

        again = await http.get("/graphql", params={"query": SALES}, headers={"if-none-match": tag})
        assert again.status_code == 304 and again.content == b""
        assert again.headers["etag"] == tag
        assert len(canned.requests) == requests  # nothing executed

        stock = await http.get("/graphql", params={"query": STOCK})
        stock_tag = stock.headers["etag"]
        assert stock_tag != tag

        await canned.notify(["sales"], sales_hours=["2026-11-25T10:00:00+00:00"])

        async def changed() -> bool:
            response = await http.get(
                "/graphql", params={"query": SALES}, headers={"if-none-match": tag}
            )
            return response.status_code == 200

        await until(changed)
        newer = await http.get("/graphql", params={"query": SALES})
        assert newer.headers["etag"] != tag
        # A sales change leaves the stock answer's tag valid.
        stock_again = await http.get(
            "/graphql", params={"query": STOCK}, headers={"if-none-match": stock_tag}
        )
        assert stock_again.status_code == 304
        # A list of tags, weak or strong, matches when one of them does.
        listed = await http.get(
            "/graphql",
            params={"query": STOCK},
            headers={"if-none-match": f'"x", {stock_tag.removeprefix("W/")}'},
        )
        assert listed.status_code == 304


async def test_no_etag_for_posts_errors_or_unknown_data_versions(
    client: httpx.AsyncClient, canned: Canned
) -> None:
    # No heartbeat yet: the data version is unknown, so nothing may be revalidated.
    unknown = await client.get("/graphql", params={"query": SALES})
    assert unknown.status_code == 200 and "etag" not in unknown.headers
    await canned.heartbeat_until_known(state(client.app).versions)  # type: ignore[attr-defined]
    post = await client.post("/graphql", json={"query": SALES})
    assert "etag" not in post.headers
    failing = await client.get(
        "/graphql",
        params={"query": '{ salesSummary(from: "2000-01-01T00:00:00Z") { orders } }'},
    )
    assert failing.json()["errors"] and "etag" not in failing.headers
    assert "etag" in (await client.get("/graphql", params={"query": SALES})).headers


@pytest.mark.parametrize(
    "header",
    ["", "garbage", '"', "W/", ",,,", 'W/"' + "x" * 10_000 + '"', "é".encode(), "*, x", "*"],
)
async def test_odd_if_none_match_headers_never_fail_a_request(
    client: httpx.AsyncClient, canned: Canned, header: str | bytes
) -> None:
    await canned.heartbeat_until_known(state(client.app).versions)  # type: ignore[attr-defined]
    response = await client.get(
        "/graphql", params={"query": SALES}, headers={"if-none-match": header}
    )
    assert response.status_code in (200, 304)
    # "*" alone matches any current representation (RFC 9110).
    assert (response.status_code == 304) == (header == "*")


async def test_answers_for_a_token_holder_are_private(settings: Settings, canned: Canned) -> None:
    async with app_client(settings.replace(jwt_secret=SECRET)) as http:
        await canned.heartbeat_until_known(state(http.app).versions)  # type: ignore[attr-defined]
        headers = {"authorization": f"Bearer {token()}"}
        response = await http.get("/graphql", params={"query": SALES}, headers=headers)
        assert response.headers["cache-control"] == "private, no-cache"
        assert "Authorization" in response.headers["vary"]


def test_if_none_match_comparison_is_weak() -> None:
    assert matches('W/"a"', 'W/"a"') and matches('"a"', 'W/"a"') and matches('x, W/"a"', 'W/"a"')
    assert not matches('W/"b"', 'W/"a"') and not matches(None, 'W/"a"')


# -- compression -----------------------------------------------------------------------


@pytest.mark.slow
async def test_large_answers_are_compressed_as_the_client_prefers_and_small_ones_are_not(
    settings: Settings, canned: Canned, server_factory: Any
) -> None:
    server = server_factory(settings.replace(compression_min_bytes=1024))
    async with httpx.AsyncClient(base_url=server.url) as http:
        plain = await http.post(
            "/graphql", json={"query": BIG}, headers={"accept-encoding": "identity"}
        )
        assert "content-encoding" not in plain.headers
        assert len(plain.content) > 10_000
        for header, coding in [
            ("br", "br"),
            ("gzip, deflate, br", "br"),
            ("gzip", "gzip"),
            ("br;q=0.5, gzip", "gzip"),
            ("*", "br"),
            ("br;q=0, *;q=0.1", "gzip"),
        ]:
            # Raw bytes: check the coding on the wire, then decode by hand.
            request = http.build_request(
                "POST", "/graphql", json={"query": BIG}, headers={"accept-encoding": header}
            )
            response = await http.send(request, stream=True)
            raw = b"".join([chunk async for chunk in response.aiter_raw()])
            await response.aclose()
            assert response.headers["content-encoding"] == coding, header
            assert "Accept-Encoding" in response.headers["vary"]
            decoded = brotli.decompress(raw) if coding == "br" else gzip.decompress(raw)
            assert decoded == plain.content
            assert len(raw) < len(plain.content) / 4
        for header in ("gzip;q=0, br;q=0", "deflate", "", "zstd", "gzip;q=nan, br;q=2"):
            response = await http.post(
                "/graphql", json={"query": BIG}, headers={"accept-encoding": header}
            )
            assert "content-encoding" not in response.headers, header
        small = await http.post(
            "/graphql", json={"query": "{ pipeline { lag } }"}, headers={"accept-encoding": "br"}
        )
        assert "content-encoding" not in small.headers


async def test_compression_can_be_turned_off(settings: Settings, canned: Canned) -> None:
    async with app_client(settings.replace(compression_min_bytes=0)) as http:
        response = await http.post("/graphql", json={"query": BIG})
        assert "content-encoding" not in response.headers


@hsettings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_accept_encoding_parsing_never_fails(header: str) -> None:
    assert choose(header) in (None, "br", "gzip")


# -- batching --------------------------------------------------------------------------


async def test_batches_are_refused_when_batching_is_off(client: httpx.AsyncClient) -> None:
    response = await client.post("/graphql", json=[{"query": "{ pipeline { lag } }"}])
    assert response.status_code == 400
    assert "GATEWAY_BATCHING" in response.json()["errors"][0]["message"]


async def test_a_batch_answers_each_operation_in_order(settings: Settings, canned: Canned) -> None:
    async with app_client(settings.replace(batching=True, max_batch_size=4)) as http:
        response = await http.post(
            "/graphql",
            json=[
                {"query": "{ pipeline { lag } }"},
                {"query": "{ nope }"},
                "not an operation",
                {
                    "query": "query Q($w: String) { lowStock(warehouse: $w) { sku } }",
                    "variables": {"w": "WH-1"},
                },
            ],
        )
        assert response.status_code == 200
        answers = response.json()
        assert answers[0] == {"data": {"pipeline": {"lag": 0}}}
        assert answers[1]["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
        assert answers[2]["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
        assert answers[3] == {"data": {"lowStock": [{"sku": "SKU-1"}]}}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "empty"),
        ([{"query": "{ pipeline { lag } }"}] * 5, "more than 4"),
        ([[{"query": "{ pipeline { lag } }"}]], None),
        ([{"query": 1}, None, 3.5, True], None),
    ],
)
async def test_odd_batches_get_clear_errors(
    settings: Settings, canned: Canned, body: Any, message: str | None
) -> None:
    async with app_client(settings.replace(batching=True, max_batch_size=4)) as http:
        response = await http.post(
            "/graphql",
            content=json.dumps(body).encode(),
            headers={"content-type": "application/json"},
        )
        if message is not None:
            assert response.status_code == 400
            assert message in response.json()["errors"][0]["message"]
        else:
            answers = response.json()
            assert len(answers) == len(body)
            assert all(a["errors"][0]["extensions"]["code"] == "BAD_REQUEST" for a in answers)


async def test_a_batch_shares_one_cost_limit(settings: Settings, canned: Canned) -> None:
    # Each operation alone is within the limit; together they are not.
    query = "query Q($n: Int!) { topProducts(limit: $n) { sku name } }"
    limited = settings.replace(batching=True, max_batch_size=3, max_cost=700)
    async with app_client(limited) as http:
        single = await http.post("/graphql", json={"query": query, "variables": {"n": 100}})
        assert "errors" not in single.json()
        response = await http.post("/graphql", json=[{"query": query, "variables": {"n": 100}}] * 3)
        answers = response.json()
        # 300 + 300 fit in 700; the third does not, whichever order they finish in.
        assert "errors" not in answers[0] and "errors" not in answers[1]
        refused = [a for a in answers if "errors" in a]
        assert len(refused) == 1
        assert all(a["errors"][0]["extensions"]["code"] == "COST_LIMIT_EXCEEDED" for a in refused)


# -- per-operation metrics -------------------------------------------------------------


async def test_metrics_count_operations_by_name_and_named_queries(
    settings: Settings, canned: Canned
) -> None:
    async with app_client(settings.replace(metrics_max_operations=2)) as http:
        await canned.heartbeat_until_known(state(http.app).versions)  # type: ignore[attr-defined]
        for name in ("A", "A", "B", "C", "D"):
            await http.get("/graphql", params={"query": f"query {name} {{ pipeline {{ lag }} }}"})
        await http.post("/graphql", json={"query": "query Bad { nope }"})
        text = (await http.get("/metrics")).text
    assert (
        'gateway_graphql_operations_total{operation="A",outcome="ok",transport="http"} 1.0' in text
    )
    assert (
        'gateway_graphql_operations_total{operation="A",outcome="cached",transport="http"} 1.0'
        in text
    )
    assert 'operation="B",outcome="ok"' in text
    # Past the label bound, names count as "other"; invalid documents as "unknown".
    assert (
        'gateway_graphql_operations_total{operation="other",outcome="ok",transport="http"} 2.0'
        in text
    )
    assert 'operation="unknown",outcome="error"' in text
    assert 'gateway_graphql_operation_seconds_count{operation="A"} 2.0' in text
    assert 'gateway_named_queries_total{query="pipeline",source="upstream"}' in text
    assert 'gateway_named_query_seconds_count{query="pipeline"}' in text
