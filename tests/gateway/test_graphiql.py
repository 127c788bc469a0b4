"""GraphiQL served by the gateway: no CDN, queries, subscriptions, a JWT in the headers.

The browser tests run Debian's Chromium against the real system (nats-server,
materializer and gateway as processes) with every request to another host aborted, as
on a warehouse machine without internet.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import anyio
import httpx
import pytest
from playwright.async_api import Browser, Page
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

from gateway import graphiql
from gateway.app import create_app
from gateway.settings import Settings
from tests.gateway.browser import offline_context
from tests.gateway.kiosk_stack import Publisher, Stack, order, start_with_world, wait_applied

# Starlette serves files through anyio.open_file, which anyio imports lazily. Importing it
# here, not first inside a request task deep in the stack, avoids CPython 3.11.7's "AST
# constructor recursion depth mismatch" when pytest's import hook compiles it.
assert anyio.open_file is not None

SCREENSHOT = os.environ.get("GRAPHIQL_SCREENSHOT")  # e.g. docs/graphiql.png
README = Path(__file__).parents[2] / "README.md"


def client(settings: Settings | None = None) -> httpx.AsyncClient:
    """An in-process client of a gateway app (its lifespan is not run: no NATS needed)."""
    app = create_app(settings or Settings(nats_url="nats://127.0.0.1:1"))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw.test")


# -- the page and its assets (no browser) --------------------------------------------


async def test_browsers_get_the_bundled_page_and_every_asset_it_names() -> None:
    async with client() as http:
        page = await http.get("/graphql", headers={"accept": "text/html,*/*;q=0.8"})
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert "https://" not in page.text and "http://" not in page.text
        assert '<base href="/graphiql/">' in page.text
        for asset in ("dist/graphiql.js", "dist/graphiql.css", "page.css"):
            served = await http.get(f"/graphiql/{asset}")
            assert served.status_code == 200, asset
        for worker in ("editor", "json", "graphql"):
            served = await http.get(f"/graphiql/dist/{worker}.worker.js")
            assert served.status_code == 200, worker
        assert (await http.get("/graphiql/index.html")).status_code == 404


async def test_clients_asking_for_json_still_get_graphql() -> None:
    async with client() as http:
        reply = await http.get("/graphql", params={"query": "{ __typename }"})
        assert reply.json() == {"data": {"__typename": "Query"}}
        bare = await http.get("/graphql", headers={"accept": "application/json"})
        assert bare.headers["content-type"].startswith("application/json")


async def test_graphiql_off_means_no_page_and_no_bundle() -> None:
    async with client(Settings(nats_url="nats://127.0.0.1:1", graphiql=False)) as http:
        page = await http.get("/graphql", headers={"accept": "text/html"})
        assert not page.headers["content-type"].startswith("text/html")
        assert (await http.get("/graphiql/dist/graphiql.js")).status_code == 404


async def test_page_behind_a_proxy_prefix_points_at_that_prefix() -> None:
    app = create_app(Settings(nats_url="nats://127.0.0.1:1"))
    transport = httpx.ASGITransport(app=app, root_path="/bi")
    async with httpx.AsyncClient(transport=transport, base_url="http://gw.test") as http:
        page = await http.get("/bi/graphql", headers={"accept": "text/html"})
        assert '<base href="/bi/graphiql/">' in page.text
        assert 'data-graphql="/bi/graphql"' in page.text


def test_bundle_names_no_other_origin() -> None:
    # Monaco's sources mention URLs in comments and messages; what matters is that
    # nothing is fetched from them, so look for fetchable references only.
    for path in (graphiql.STATIC_DIR / "dist").glob("*.js"):
        text = path.read_text(encoding="utf-8", errors="replace")
        fetched = re.search(r"""(import|importScripts|new Worker)\(?\s*["']https?://""", text)
        assert fetched is None, path
    css = (graphiql.STATIC_DIR / "dist" / "graphiql.css").read_text(encoding="utf-8")
    assert "url(http" not in css and "@import" not in css


def test_examples_hold_the_readme_query_a_subscription_and_a_time_range() -> None:
    readme_query = re.search(r"```graphql\n(.*?)```", README.read_text(), re.S)
    assert readme_query is not None
    flat = " ".join(readme_query.group(1).split()).replace("{ ", "{").replace(" }", "}")
    queries = [str(e["query"]) for e in graphiql.EXAMPLES]
    first = " ".join(line for line in queries[0].splitlines() if not line.startswith("#"))
    first = first.replace("query Overview ", "")
    assert " ".join(first.split()).replace("{ ", "{").replace(" }", "}") == flat
    assert any(q.lstrip("# ").split("\n", 1)[1].startswith("subscription") for q in queries)
    assert any("$from" in q and "$to" in q for q in queries)


def test_examples_embed_safely_in_the_page() -> None:
    page = graphiql.render_page("")
    embedded = page.split('type="application/json">', 1)[1].split("</script>", 1)[0]
    examples = json.loads(embedded)
    assert len(examples) == len(graphiql.EXAMPLES)
    ranged = next(e for e in examples if "variables" in e)
    assert set(ranged["variables"]) == {"from", "to"}


# -- in Chromium, offline -------------------------------------------------------------


async def response_text(page: Page) -> str:
    """What the response pane shows (Monaco renders spaces as no-break spaces)."""
    return (await page.locator(".graphiql-response").inner_text()).replace("\xa0", " ")


async def wait_response(page: Page, *needles: str) -> None:
    """Wait until the response pane shows one of `needles` (fail with what it shows)."""
    try:
        await page.wait_for_function(
            """needles => {
                const text = (document.querySelector('.graphiql-response')?.innerText ?? '')
                    .replaceAll('\\u00a0', ' ');
                return needles.some(n => text.includes(n));
            }""",
            arg=list(needles),
        )
    except PlaywrightTimeoutError:
        shown = await response_text(page)
        raise AssertionError(f"response pane never showed {needles}: {shown!r}") from None


async def run_tab(page: Page, index: int, *expect: str) -> None:
    """Select the example tab `index`, run it and wait for one of `expect`.

    GraphiQL takes the operation name from the editor a moment after a tab switch; a
    run clicked within that moment sends the previous tab's name ("Unknown operation
    named …", seen on a busy machine). That answer is GraphiQL's, not the gateway's:
    run it again once the name has caught up.
    """
    await page.locator(".graphiql-tab").nth(index).click()
    stale = "Unknown operation named"
    for _ in range(3):
        await page.locator(".graphiql-execute-button").click()
        await wait_response(page, *expect, stale)
        if stale not in await response_text(page):
            return
        await page.wait_for_timeout(500)
    raise AssertionError(f"tab {index} kept sending a stale operation name")


async def open_graphiql(browser: Browser, stack: Stack) -> tuple[Page, list[str], list[str]]:
    """GraphiQL in a context that reaches only this machine; page, blocked URLs, errors."""
    context, blocked = await offline_context(browser)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.set_default_timeout(20_000)
    await page.goto(f"{stack.url}/graphql")
    await page.locator(".graphiql-container").wait_for()
    # The editors are Monaco: wait until the query editor shows the first example.
    await page.locator(".graphiql-query-editor .view-lines").get_by_text("salesSummary").wait_for()
    return page, blocked, errors


@pytest.mark.browser
@pytest.mark.slow
async def test_graphiql_loads_offline_runs_a_query_and_receives_subscription_updates(
    stack: Stack, browser: Browser
) -> None:
    await start_with_world(stack)
    page, blocked, errors = await open_graphiql(browser, stack)

    await run_tab(page, 0, "netRevenue")
    first = await response_text(page)
    assert '"orders": 3' in first and '"netRevenue": 150.5' in first, first

    await run_tab(page, 1, '"orders": 3')
    await wait_response(page, '"orders": 3')
    async with Publisher(stack.nats.url) as pub:
        await pub.publish("order.created", order("O-LIVE", "9.50"))
    await wait_response(page, '"orders": 4')
    assert blocked == []
    assert [e for e in errors if "Content Security Policy" in e or "Refused" in e] == []
    if SCREENSHOT:
        await run_tab(page, 0, "netRevenue")
        await page.screenshot(path=SCREENSHOT)


@pytest.mark.browser
@pytest.mark.slow
async def test_a_jwt_in_the_headers_editor_authorizes_queries_and_subscriptions(
    stack: Stack, browser: Browser
) -> None:
    import jwt

    secret = "graphiql-test-secret-that-is-long-enough-for-hs256"
    stack.gateway_env["GATEWAY_JWT_SECRET"] = secret
    claims = {"sub": "graphiql-test", "exp": int(time.time()) + 3600}
    token = jwt.encode(claims, secret, algorithm="HS256")
    async with Publisher(stack.nats.url) as pub:
        await pub.publish("order.created", order("O-1", "10.00"))
    stack.start_gateway()
    await wait_applied(stack, pub.sequence, token)
    page, blocked, _ = await open_graphiql(browser, stack)

    await run_tab(page, 0, "UNAUTHENTICATED", "nauthorized")
    # Headers belong to a tab: type them into the subscription's.
    await page.locator(".graphiql-tab").nth(1).click()
    await page.get_by_text("Headers", exact=True).click()
    await page.locator(".graphiql-editor-tool .graphiql-editor").last.click()
    await page.keyboard.press("Control+A")
    await page.keyboard.type(f'{{"Authorization": "Bearer {token}"')
    await page.locator(".graphiql-execute-button").click()
    await wait_response(page, '"orders": 1')
    assert blocked == []
