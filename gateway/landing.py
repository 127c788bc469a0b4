"""The landing page at ``/``: what is running, pipeline state, rejects, and where to go.

Static HTML, CSS and one ES module from the gateway's own origin (the same policy as
the kiosk: nothing from a CDN). The page asks ``/health`` and ``/graphql`` itself, so
the server side only fills in the gateway's base path.
"""

from __future__ import annotations

import html
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import BaseRoute, Mount, Route

from gateway.pages import SAME_ORIGIN_POLICY, PageAssets, page_headers, template
from pulse_bi import __version__

STATIC_DIR = Path(__file__).parent / "static" / "landing"

_PAGE_HEADERS = page_headers(SAME_ORIGIN_POLICY)


def render_page(app_root_path: str) -> str:
    """The landing HTML for a gateway living at ``app_root_path`` ("" or a proxy prefix)."""
    root = html.escape(app_root_path.rstrip("/"), quote=True)
    return template(STATIC_DIR).replace("__ROOT__", root).replace("__VERSION__", __version__)


async def page(request: Request) -> HTMLResponse:
    """The landing page."""
    return HTMLResponse(render_page(request.scope.get("root_path", "")), headers=_PAGE_HEADERS)


def routes() -> list[BaseRoute]:
    """The page at ``/`` and its assets under ``/static/landing``."""
    return [
        Route("/", page, methods=["GET", "HEAD"], name="landing"),
        Mount("/static/landing", app=PageAssets(directory=STATIC_DIR), name="landing-static"),
    ]
