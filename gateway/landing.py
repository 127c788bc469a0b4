"""The landing page at ``/``: what is running, pipeline state, rejects, and where to go.

Static HTML, CSS and one ES module from the gateway's own origin (the same policy as
the kiosk: nothing from a CDN). The page asks ``/health`` and ``/graphql`` itself, so
the server side only fills in the gateway's base path.
"""

from __future__ import annotations

import html
from functools import cache
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import BaseRoute, Mount, Route

from gateway.pages import TEMPLATE, PageAssets
from pulse_bi import __version__

STATIC_DIR = Path(__file__).parent / "static" / "landing"

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'self'; form-action 'none'; object-src 'none'"
)

_PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Cache-Control": "no-cache",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


@cache
def _template() -> str:
    return (STATIC_DIR / TEMPLATE).read_text(encoding="utf-8")


def render_page(app_root_path: str) -> str:
    """The landing HTML for a gateway living at ``app_root_path`` ("" or a proxy prefix)."""
    root = html.escape(app_root_path.rstrip("/"), quote=True)
    return _template().replace("__ROOT__", root).replace("__VERSION__", __version__)


async def page(request: Request) -> HTMLResponse:
    """The landing page."""
    return HTMLResponse(render_page(request.scope.get("root_path", "")), headers=_PAGE_HEADERS)


def routes() -> list[BaseRoute]:
    """The page at ``/`` and its assets under ``/static/landing``."""
    return [
        Route("/", page, methods=["GET", "HEAD"], name="landing"),
        Mount("/static/landing", app=PageAssets(directory=STATIC_DIR), name="landing-static"),
    ]
