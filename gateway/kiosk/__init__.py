"""The kiosk: a live wall-screen page the gateway serves at ``/kiosk``.

The page is static HTML, CSS and ES-module JavaScript (no build step, nothing from a
CDN); it reads the GraphQL live queries over the gateway's own ``/graphql`` WebSocket.
"""

from __future__ import annotations

import html
from functools import cache
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import BaseRoute, Mount, Route

from gateway.pages import TEMPLATE, PageAssets

STATIC_DIR = Path(__file__).parent / "static"

# Everything the page loads comes from the gateway's own origin: a wall screen must
# keep working without internet, and a stray CDN link would fail here, not in the field.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'self'; form-action 'none'; object-src 'none'"
)

_PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    # A screen left running for weeks must pick up a new page after an upgrade.
    "Cache-Control": "no-cache",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


@cache
def _template() -> str:
    return (STATIC_DIR / TEMPLATE).read_text(encoding="utf-8")


def render_page(root_path: str, app_root_path: str) -> str:
    """The kiosk HTML with its base URL and GraphQL endpoint filled in."""
    base = root_path.rstrip("/") + "/"
    graphql = app_root_path.rstrip("/") + "/graphql"
    return (
        _template()
        .replace("__BASE__", html.escape(base, quote=True))
        .replace("__GRAPHQL__", html.escape(graphql, quote=True))
    )


async def page(request: Request) -> HTMLResponse:
    """The kiosk page; its query parameters are read by the page's script."""
    # root_path is where the gateway mounted the kiosk (e.g. "/kiosk"), app_root_path
    # where the gateway itself lives (behind a proxy prefix, or "").
    root_path = request.scope.get("root_path", "")
    app_root_path = request.scope.get("app_root_path", "")
    return HTMLResponse(render_page(root_path, app_root_path), headers=_PAGE_HEADERS)


def routes() -> list[BaseRoute]:
    """Routes to mount at ``/kiosk``: the page at ``/`` and its assets under ``/static``."""
    return [
        Route("/", page, methods=["GET", "HEAD"], name="kiosk"),
        Mount("/static", app=PageAssets(directory=STATIC_DIR), name="kiosk-static"),
    ]
