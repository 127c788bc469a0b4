"""GraphiQL, served by the gateway itself at ``GET /graphql`` (browsers) with no CDN.

The page and its bundle (GraphiQL, the explorer plugin, React, the Monaco editor and its
web workers) live in ``gateway/static/graphiql``; ``scripts/build-graphiql`` rebuilds the
bundle from pinned npm versions (docs/GATEWAY.md). Queries go to the same ``/graphql``
over HTTP, subscriptions over its WebSocket (graphql-transport-ws); headers typed in the
headers editor (``Authorization: Bearer …``) go with both.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from pathlib import Path

from starlette.responses import HTMLResponse
from starlette.routing import BaseRoute, Mount

from gateway.pages import PageAssets, page_headers, template

STATIC_DIR = Path(__file__).parent / "static" / "graphiql"

#: The tabs a first visit opens with: the README's query, a live one and a time range.
EXAMPLES: tuple[dict[str, object], ...] = (
    {
        "query": "# The README's first query: today's sales, low stock and receivables.\n"
        "query Overview {\n"
        "  salesSummary { orders netRevenue averageOrderValue }\n"
        "  lowStock { sku warehouse onHand reorderPoint }\n"
        "  arAging { totalOutstanding buckets { current days1To30 over90 } }\n"
        "}\n",
    },
    {
        "query": "# Live: a new result about 0.1 s after each event that changes it.\n"
        "subscription LiveSales {\n"
        "  salesSummary { orders netRevenue averageOrderValue }\n"
        "}\n",
    },
    {
        "query": "# A Grafana-style time range: Infinity fills $from and $to from\n"
        "# ${__from:date:iso} and ${__to:date:iso} (grafana/DASHBOARDS.md).\n"
        "query SalesByHour($from: DateTime!, $to: DateTime!) {\n"
        "  salesByHour(from: $from, to: $to) { hour orders netRevenue }\n"
        "}\n",
    },
    {
        "query": "# How far the materializer is, and what it rejected.\n"
        "query Pipeline {\n"
        "  pipeline { lastSequence lag eventsApplied eventsRejected lastEventTime }\n"
        "  rejectedEvents(limit: 5) { sequence eventType reason receivedAt }\n"
        "}\n",
    },
)

# Monaco injects its own <style> elements and runs web workers from our origin; nothing
# else is allowed, least of all another origin (the gateway often runs without internet).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; worker-src 'self'; "
    "style-src 'self' 'unsafe-inline'; font-src 'self' data:; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'self'; form-action 'none'; object-src 'none'"
)

_PAGE_HEADERS = page_headers(CONTENT_SECURITY_POLICY)


def examples(now: dt.datetime) -> list[dict[str, object]]:
    """The example tabs, the time range being the 12 hours before ``now``."""
    window = {
        "from": (now - dt.timedelta(hours=12)).isoformat(timespec="seconds"),
        "to": now.isoformat(timespec="seconds"),
    }
    return [
        {**example, "variables": window} if "$from" in str(example["query"]) else dict(example)
        for example in EXAMPLES
    ]


def _json_in_script(value: object) -> str:
    """JSON that cannot close the <script> element it is embedded in."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e")


def render_page(app_root_path: str) -> str:
    """The GraphiQL HTML for a gateway living at ``app_root_path`` ("" or a proxy prefix)."""
    root = app_root_path.rstrip("/")
    return (
        template(STATIC_DIR)
        .replace("__BASE__", html.escape(root + "/graphiql/", quote=True))
        .replace("__ROOT__", html.escape(root, quote=True))
        .replace("__GRAPHQL__", html.escape(root + "/graphql", quote=True))
        .replace("__EXAMPLES__", _json_in_script(examples(dt.datetime.now(dt.UTC))))
    )


def page_response(app_root_path: str) -> HTMLResponse:
    """The GraphiQL page with its security headers."""
    return HTMLResponse(render_page(app_root_path), headers=_PAGE_HEADERS)


def routes() -> list[BaseRoute]:
    """The bundle's route, mounted at ``/graphiql``."""
    return [Mount("/graphiql", app=PageAssets(directory=STATIC_DIR), name="graphiql")]
