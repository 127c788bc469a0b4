"""The kiosk: a live wall-screen page the gateway serves at ``/kiosk``.

The page is static HTML, CSS and ES-module JavaScript (no build step, nothing from a
CDN); it reads the GraphQL live queries over the gateway's own ``/graphql`` WebSocket.
"""

from __future__ import annotations

import html
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import BaseRoute, Mount, Route

from gateway.pages import SAME_ORIGIN_POLICY, PageAssets, page_headers, template

STATIC_DIR = Path(__file__).parent / "static"

_PAGE_HEADERS = page_headers(SAME_ORIGIN_POLICY)


def render_page(root_path: str, app_root_path: str) -> str:
    """The kiosk HTML with its base URL, GraphQL endpoint and export path filled in."""
    base = root_path.rstrip("/") + "/"
    graphql = app_root_path.rstrip("/") + "/graphql"
    exports = app_root_path.rstrip("/") + "/export"
    return (
        template(STATIC_DIR)
        .replace("__BASE__", html.escape(base, quote=True))
        .replace("__GRAPHQL__", html.escape(graphql, quote=True))
        .replace("__EXPORT__", html.escape(exports, quote=True))
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
