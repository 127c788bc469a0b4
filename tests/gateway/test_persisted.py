"""Persisted queries: Apollo's APQ protocol and trusted documents, on a real gateway app."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from click.testing import CliRunner
from graphql import parse
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from gateway.app import create_app
from gateway.cli import gateway_command
from gateway.persisted import (
    BUILTIN_MANIFEST,
    ManifestError,
    PersistedQueries,
    load_manifest,
    manifest_json,
    sha256_hex,
    signature,
)
from gateway.settings import Settings, SettingsError
from tests.gateway.conftest import Canned, Server, app_client
from tests.grafana.infinity import (
    build_request,
    iter_targets,
    load_dashboards,
    panel_range,
    to_frame,
)

ROOT = Path(__file__).resolve().parents[2]
QUERY = "{ pipeline { lastSequence lag } }"
GR = "application/graphql-response+json"


def pq(digest: str, version: Any = 1) -> dict[str, Any]:
    return {"persistedQuery": {"version": version, "sha256Hash": digest}}


async def post(http: httpx.AsyncClient, body: Any, accept: str = "application/json") -> Any:
    return await http.post("/graphql", json=body, headers={"accept": accept})


def codes(response: httpx.Response) -> list[str]:
    return [e["extensions"]["code"] for e in response.json()["errors"]]


# -- APQ --------------------------------------------------------------------------------


async def test_apq_registers_a_document_once_then_serves_it_by_hash_over_post_and_get(
    settings: Settings, canned: Canned
) -> None:
    digest = sha256_hex(QUERY)
    async with app_client(settings.replace(persisted_queries="apq")) as http:
        miss = await post(http, {"extensions": pq(digest)})
        assert miss.status_code == 200
        assert miss.json()["errors"][0]["message"] == "PersistedQueryNotFound"
        assert codes(miss) == ["PERSISTED_QUERY_NOT_FOUND"]
        strict = await post(http, {"extensions": pq(digest)}, GR)
        assert strict.status_code == 400 and codes(strict) == ["PERSISTED_QUERY_NOT_FOUND"]

        first = await post(http, {"query": QUERY, "extensions": pq(digest)})
        assert first.json() == {"data": {"pipeline": {"lastSequence": 12, "lag": 0}}}
        by_hash = await post(http, {"extensions": pq(digest)})
        assert by_hash.json() == first.json()
        params = {"extensions": json.dumps(pq(digest))}
        by_get = await http.get("/graphql", params=params)
        assert by_get.status_code == 200 and by_get.json() == first.json()


async def test_apq_refuses_a_hash_that_does_not_match_and_never_stores_bad_documents(
    settings: Settings, canned: Canned
) -> None:
    async with app_client(settings.replace(persisted_queries="apq")) as http:
        wrong = await post(http, {"query": QUERY, "extensions": pq("0" * 64)})
        assert codes(wrong) == ["PERSISTED_QUERY_HASH_MISMATCH"]
        assert (await post(http, {"extensions": pq("0" * 64)})).json()["errors"][0][
            "message"
        ] == "PersistedQueryNotFound"
        bad = "{ nope }"
        invalid = await post(http, {"query": bad, "extensions": pq(sha256_hex(bad))})
        assert codes(invalid) == ["GRAPHQL_VALIDATION_FAILED"]
        again = await post(http, {"extensions": pq(sha256_hex(bad))})
        assert codes(again) == ["PERSISTED_QUERY_NOT_FOUND"]


@pytest.mark.parametrize(
    "extensions",
    [
        {"persistedQuery": {"version": 2, "sha256Hash": "a" * 64}},
        {"persistedQuery": {"version": "1", "sha256Hash": "a" * 64}},
        {"persistedQuery": {"version": 1}},
        {"persistedQuery": {"version": 1, "sha256Hash": "A" * 64}},
        {"persistedQuery": {"version": 1, "sha256Hash": "a" * 63}},
        {"persistedQuery": {"version": 1, "sha256Hash": "a" * 65}},
        {"persistedQuery": {"version": 1, "sha256Hash": "é" * 64}},
        {"persistedQuery": {"version": 1, "sha256Hash": 12}},
        {"persistedQuery": {"version": 1, "sha256Hash": None}},
        {"persistedQuery": "yes"},
        {"persistedQuery": [1]},
        {"persistedQuery": None},
    ],
)
async def test_malformed_persisted_query_extensions_get_a_clear_error(
    client: httpx.AsyncClient, settings: Settings, extensions: dict[str, Any]
) -> None:
    async with app_client(settings.replace(persisted_queries="apq")) as http:
        response = await post(http, {"extensions": extensions})
        assert response.status_code in (200, 400)
        error = response.json()["errors"][0]
        assert error["extensions"]["code"] in (
            "PERSISTED_QUERY_BAD_REQUEST",
            "BAD_REQUEST",
        ), error


async def test_apq_store_is_bounded_least_recently_used_first(
    settings: Settings, canned: Canned
) -> None:
    documents = [f"{{ pipeline {{ lag }} a{i}: pipeline {{ lag }} }}" for i in range(3)]
    async with app_client(settings.replace(persisted_queries="apq", apq_entries=2)) as http:
        for document in documents:
            ok = await post(http, {"query": document, "extensions": pq(sha256_hex(document))})
            assert "errors" not in ok.json()
        forgotten = await post(http, {"extensions": pq(sha256_hex(documents[0]))})
        assert codes(forgotten) == ["PERSISTED_QUERY_NOT_FOUND"]
        kept = await post(http, {"extensions": pq(sha256_hex(documents[2]))})
        assert "errors" not in kept.json()


async def test_hash_only_requests_are_not_supported_when_persisted_queries_are_off(
    client: httpx.AsyncClient,
) -> None:
    response = await post(client, {"extensions": pq(sha256_hex(QUERY))})
    assert response.json()["errors"][0]["message"] == "PersistedQueryNotSupported"
    assert codes(response) == ["PERSISTED_QUERY_NOT_SUPPORTED"]
    # A full document next to the hash is still refused: the client learns APQ is off.
    with_query = await post(client, {"query": QUERY, "extensions": pq(sha256_hex(QUERY))})
    assert codes(with_query) == ["PERSISTED_QUERY_NOT_SUPPORTED"]
    plain = await post(client, {"query": QUERY, "extensions": {"other": 1}})
    assert "errors" not in plain.json()


@hsettings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    persisted=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=80),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=8,
    ),
    query=st.none() | st.text(max_size=50),
)
def test_resolve_never_crashes_on_any_extension_value(persisted: Any, query: str | None) -> None:
    from gateway.errors import GatewayError

    for mode in ("off", "apq"):
        store = PersistedQueries(Settings(persisted_queries=mode))
        try:
            store.resolve(query, {"persistedQuery": persisted})
        except GatewayError as exc:
            assert exc.message and exc.code


# -- trusted documents ------------------------------------------------------------------


def test_the_built_in_manifest_is_what_the_command_generates_from_the_repository() -> None:
    result = CliRunner().invoke(gateway_command, ["trusted-documents", "--root", str(ROOT)])
    assert result.exit_code == 0, result.output
    assert result.output == BUILTIN_MANIFEST.read_text(encoding="utf-8")
    manifest = json.loads(result.output)
    names = {entry["name"] for entry in manifest["operations"]}
    # Every dashboard panel and every kiosk panel is in it.
    assert {"KioskSalesToday", "KioskLowStock", "KioskReceivables", "KioskPipeline"} <= names
    dashboards = {t.document for t in iter_targets(load_dashboards())}
    assert dashboards <= {entry["body"] for entry in manifest["operations"]}


def test_command_adds_operations_of_a_graphql_file_with_the_fragments_they_use(
    tmp_path: Path,
) -> None:
    extra = tmp_path / "mine.graphql"
    extra.write_text(
        "query Mine { pipeline { ...P } }\nfragment P on Pipeline { lag }\n"
        "fragment Unused on Pipeline { lastSequence }\nquery Other { pipeline { lag } }\n"
    )
    out = tmp_path / "manifest.json"
    result = CliRunner().invoke(
        gateway_command, ["trusted-documents", "--add", str(extra), "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    documents = load_manifest(out)
    mine = next(body for body in documents.values() if "query Mine" in body)
    assert "fragment P" in mine and "Unused" not in mine
    assert any("query Other" in body for body in documents.values())


def test_signature_hides_argument_values_but_keeps_the_shape() -> None:
    a = parse('query Q { salesSummary(from: "2026-01-01T00:00:00Z") { orders } }')
    b = parse('query Q { salesSummary(from: "1999-12-31T23:59:59Z") { orders } }')
    more = parse('query Q { salesSummary(from: "2026-01-01T00:00:00Z") { orders units } }')
    renamed = parse('query R { salesSummary(from: "2026-01-01T00:00:00Z") { orders } }')
    listed = parse("query Q { topProducts(limit: 5) { sku } }")
    bigger = parse("query Q { topProducts(limit: 99999) { sku } }")
    assert signature(a) == signature(b)
    assert signature(listed) == signature(bigger)
    assert signature(a) != signature(more)
    assert signature(a) != signature(renamed)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "is not JSON"),
        ("[]", "expected"),
        ('{"format": "apollo-persisted-query-manifest", "version": 2}', "version 1"),
        ('{"format": "apollo-persisted-query-manifest", "version": 1}', "'operations'"),
        (
            '{"format": "apollo-persisted-query-manifest", "version": 1, "operations": [1]}',
            "must be an object",
        ),
        (
            '{"format": "apollo-persisted-query-manifest", "version": 1, '
            '"operations": [{"id": "x", "body": "{ pipeline { lag } }"}]}',
            "sha256",
        ),
        (
            '{"format": "apollo-persisted-query-manifest", "version": 1, '
            f'"operations": [{{"id": "{sha256_hex("{ nope")}", "body": "{{ nope"}}]}}',
            "does not parse",
        ),
        (
            '{"format": "apollo-persisted-query-manifest", "version": 1, '
            '"operations": [{"id": "x", "body": ""}]}',
            "'body'",
        ),
        ("[" * 100_000, "not JSON"),
    ],
)
def test_bad_manifests_stop_the_gateway_with_a_clear_error(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "manifest.json"
    path.write_text(content)
    with pytest.raises(ManifestError, match=message):
        create_app(Settings(persisted_queries="trusted", trusted_documents=(str(path),)))


def test_a_missing_manifest_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="cannot read"):
        create_app(
            Settings(persisted_queries="trusted", trusted_documents=(str(tmp_path / "no.json"),))
        )


@pytest.mark.parametrize("value", ["on", "APQX", "trusted,apq", "💥", "\x00"])
def test_unknown_persisted_query_modes_are_refused(value: str) -> None:
    # An empty value means the default, as for every setting (docs/OPERATIONS.md).
    assert Settings.from_env({"GATEWAY_PERSISTED_QUERIES": ""}).persisted_queries == "off"
    with pytest.raises(SettingsError, match="GATEWAY_PERSISTED_QUERIES"):
        Settings.from_env({"GATEWAY_PERSISTED_QUERIES": value})
    assert Settings.from_env({"GATEWAY_PERSISTED_QUERIES": " Trusted "}).persisted_queries == (
        "trusted"
    )


async def test_every_dashboard_panel_works_in_trusted_mode_as_grafana_sends_it(
    settings: Settings, canned: Canned
) -> None:
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    async with app_client(settings.replace(persisted_queries="trusted")) as http:
        targets = list(iter_targets(load_dashboards()))
        assert len(targets) > 10
        for target in targets:
            request = build_request(
                target, "http://gw", panel_range(target.dashboard, target.panel, now)
            )
            response = await http.request(
                request.method, request.url, headers=request.headers, content=request.body
            )
            answer = response.json()
            assert response.status_code == 200, target.name
            assert not answer.get("errors"), (target.name, answer["errors"])
            to_frame(answer, target.target)


async def test_trusted_mode_refuses_everything_else_with_a_clear_error(
    settings: Settings, canned: Canned, tmp_path: Path
) -> None:
    mine = "query Mine { pipeline { lag } }"
    extra = tmp_path / "mine.json"
    extra.write_text(manifest_json([("Mine", mine)]))
    trusted = settings.replace(persisted_queries="trusted", trusted_documents=(str(extra),))
    async with app_client(trusted) as http:
        assert "errors" not in (await post(http, {"query": mine})).json()
        by_hash = await post(http, {"extensions": pq(sha256_hex(mine))})
        assert by_hash.json() == {"data": {"pipeline": {"lag": 0}}}
        refused = [
            QUERY,
            "query Mine { pipeline { lag lastSequence } }",  # one more field
            "query Mine { pipeline { lag } } query X { pipeline { lag } }",
            "query Mine { pipeline { lag } __schema { types { name } } }",
            "{ __schema { queryType { name } } }",
            '{ __type(name: "Pipeline") { name } }',
            "query Mine { pipeline { lag }}# comment\n" * 3,
        ]
        for document in refused:
            for accept in ("application/json", GR):
                response = await post(http, {"query": document}, accept)
                assert codes(response) == ["PERSISTED_QUERY_NOT_IN_LIST"], document
                assert response.status_code == (400 if accept == GR else 200)
            get = await http.get("/graphql", params={"query": document})
            assert codes(get) == ["PERSISTED_QUERY_NOT_IN_LIST"]
        # Whitespace and comments do not matter: the same operation is the same document.
        spaced = "# mine\nquery   Mine {\n  pipeline { lag }\n}\n"
        assert "errors" not in (await post(http, {"query": spaced})).json()
        unknown = await post(http, {"extensions": pq("f" * 64)})
        assert codes(unknown) == ["PERSISTED_QUERY_NOT_FOUND"]
        # A registration attempt does not add to the list.
        register = await post(http, {"query": QUERY, "extensions": pq(sha256_hex(QUERY))})
        assert codes(register) == ["PERSISTED_QUERY_NOT_IN_LIST"]
        # No GraphiQL either.
        page = await http.get("/graphql", headers={"accept": "text/html"})
        assert "<html" not in page.text.lower()
        assert (await http.get("/graphiql/graphiql.css")).status_code == 404


async def test_trusted_mode_with_developer_tools_allows_introspection_but_not_queries(
    settings: Settings, canned: Canned
) -> None:
    tools = settings.replace(persisted_queries="trusted", trusted_developer_tools=True)
    async with app_client(tools) as http:
        schema = await post(http, {"query": "{ __schema { queryType { name } } }"})
        assert schema.json() == {"data": {"__schema": {"queryType": {"name": "Query"}}}}
        typename = await post(http, {"query": "{ __typename }"})
        assert "errors" not in typename.json()
        mixed = await post(http, {"query": "{ __typename pipeline { lag } }"})
        assert codes(mixed) == ["PERSISTED_QUERY_NOT_IN_LIST"]
        spread = await post(http, {"query": "{ ...F } fragment F on Query { pipeline { lag } }"})
        assert codes(spread) == ["PERSISTED_QUERY_NOT_IN_LIST"]
        page = await http.get("/graphql", headers={"accept": "text/html"})
        assert "<html" in page.text.lower()
    no_introspection = tools.replace(introspection=False)
    async with app_client(no_introspection) as http:
        schema = await post(http, {"query": "{ __schema { queryType { name } } }"})
        assert set(codes(schema)) == {"GRAPHQL_VALIDATION_FAILED"}


@pytest.mark.slow
async def test_kiosk_subscriptions_work_in_trusted_mode_and_others_are_refused(
    settings: Settings, canned: Canned, server_factory: Any
) -> None:
    server: Server = server_factory(settings.replace(persisted_queries="trusted"))
    kiosk = json.loads(BUILTIN_MANIFEST.read_text())["operations"]
    bodies = [op["body"] for op in kiosk if op["name"].startswith("Kiosk")]
    async with websockets.connect(server.ws_url, subprotocols=["graphql-transport-ws"]) as ws:
        await ws.send(json.dumps({"type": "connection_init"}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        for index, body in enumerate(bodies):
            await ws.send(
                json.dumps({"id": str(index), "type": "subscribe", "payload": {"query": body}})
            )
        await ws.send(
            json.dumps(
                {
                    "id": "x",
                    "type": "subscribe",
                    "payload": {"query": "subscription { pipeline { lag } }"},
                }
            )
        )
        seen: dict[str, dict[str, Any]] = {}
        while len(seen) < len(bodies) + 1:
            message = json.loads(await ws.recv())
            if message["type"] in ("next", "error"):
                seen.setdefault(message["id"], message)
        refused = seen.pop("x")
        assert refused["type"] == "error"
        assert refused["payload"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_IN_LIST"
        for message in seen.values():
            assert message["type"] == "next", message
            assert not message["payload"].get("errors"), message


async def test_the_landing_page_figures_work_in_trusted_mode(
    settings: Settings, canned: Canned
) -> None:
    # What landing.js does: ask which Pipeline fields exist, then read the leaves it wants.
    script = (ROOT / "gateway" / "static" / "landing" / "landing.js").read_text()
    introspect, pipeline, alerts = re.findall(r"`(\{[^`]*)`", script)
    wanted = re.findall(r"'(\w+)'", re.search(r"const wanted = \[([^\]]*)\]", script)[1])  # type: ignore[index]

    def leaf(kind: dict[str, Any]) -> str:
        return leaf(kind["ofType"]) if kind.get("ofType") else str(kind["kind"])

    async with app_client(settings.replace(persisted_queries="trusted")) as http:
        fields = (await post(http, {"query": introspect})).json()["data"]["__type"]["fields"]
        names = {f["name"] for f in fields if leaf(f["type"]) in ("SCALAR", "ENUM")}
        selection = " ".join(name for name in wanted if name in names)
        answer = await post(http, {"query": pipeline.replace("${selection}", selection)})
        assert "errors" not in answer.json(), answer.json()
        assert answer.json()["data"]["pipeline"]["lastSequence"] == 12
        # The alert badge's query is trusted too (this gateway has no rules: an answer
        # without the refusal of an unlisted document).
        badge = (await post(http, {"query": alerts})).json()
        assert "PERSISTED_QUERY_NOT_IN_LIST" not in json.dumps(badge), badge
