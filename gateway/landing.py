"""The landing page at ``/``: what is running, pipeline state, rejects, and where to go.

Static HTML, CSS and one ES module from the gateway's own origin (the same policy as
the kiosk: nothing from a CDN). The page asks ``/health`` and ``/graphql`` itself, so
the server side only fills in the gateway's base path.
"""

from __future__ import annotations

import html
import os
from functools import cache
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from pulse_bi import __version__

STATIC_DIR = Path(__file__).parent / "static" / "landing"
_TEMPLATE = "index.html"

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
    return (STATIC_DIR / _TEMPLATE).read_text(encoding="utf-8")


def render_page(app_root_path: str) -> str:
    """The landing HTML for a gateway living at ``app_root_path`` ("" or a proxy prefix)."""
    root = html.escape(app_root_path.rstrip("/"), quote=True)
    return _template().replace("__ROOT__", root).replace("__VERSION__", __version__)


async def page(request: Request) -> HTMLResponse:
    """The landing page."""
    return HTMLResponse(render_page(request.scope.get("root_path", "")), headers=_PAGE_HEADERS)


class LandingStatic(StaticFiles):
    """The page's script and style, revalidated on every load."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        """Serve one asset; the unrendered template is not one."""
        if os.path.normpath(path) == _TEMPLATE:
            raise HTTPException(status_code=404)
        return await super().get_response(path, scope)

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        """The file, with headers that keep it fresh and same-origin."""
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def routes() -> list[BaseRoute]:
    """The page at ``/`` and its assets under ``/static/landing``."""
    return [
        Route("/", page, methods=["GET", "HEAD"], name="landing"),
        Mount("/static/landing", app=LandingStatic(directory=STATIC_DIR), name="landing-static"),
    ]
