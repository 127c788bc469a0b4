"""Standard introspection from real clients against a real uvicorn gateway, on defaults."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from graphql import build_client_schema, get_introspection_query

from gateway.settings import Settings
from tests.gateway.conftest import Canned, NodeScript


async def test_graphql_core_introspection_builds_the_schema(
    settings: Settings, canned: Canned, server_factory: Any
) -> None:
    # What gql's fetch_schema_from_transport=True does: the query, then build_client_schema.
    server = server_factory(settings)
    async with httpx.AsyncClient(base_url=server.url) as http:
        for query in (
            get_introspection_query(),
            get_introspection_query(True, True, True, True, True, True, True),
        ):
            response = await http.post(
                "/graphql",
                json={"query": query, "operationName": "IntrospectionQuery"},
                headers={"accept": "application/graphql-response+json"},
            )
            assert response.status_code == 200, response.text
            body = response.json()
            assert "errors" not in body
            schema = build_client_schema(body["data"])
            assert schema.query_type is not None
            assert "overdueInvoices" in schema.query_type.fields
            assert schema.subscription_type is not None


async def test_graphql_core_introspection_is_refused_when_switched_off(
    settings: Settings, canned: Canned, server_factory: Any
) -> None:
    server = server_factory(settings.replace(introspection=False))
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.post("/graphql", json={"query": get_introspection_query()})
    assert "introspection has been disabled" in response.json()["errors"][0]["message"]


@pytest.mark.slow
async def test_graphql_js_introspection_builds_the_schema(node_script: NodeScript) -> None:
    returncode, stdout, stderr = await node_script("introspect.mjs", "graphql")
    assert returncode == 0, (stdout, stderr)
    result = json.loads(stdout)
    assert result["status"] == 200
    assert "salesByHour" in result["query"] and result["types"] > 20
