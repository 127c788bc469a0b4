"""What the gateway's own pages (kiosk, landing page, GraphiQL) share: their assets.

Each page is an ``index.html`` template rendered per request next to its static assets.
The assets are served with ``Cache-Control: no-cache`` (revalidated by ETag on every load,
so an upgrade shows at once, and nothing is fetched from elsewhere: docs/KIOSK.md) and
``nosniff``; the unrendered template is not one of them.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

#: The page template in each page's static folder, rendered by its module.
TEMPLATE = "index.html"

#: Everything a page loads comes from the gateway's own origin: a wall screen must keep
#: working without internet, and a stray CDN link would fail here, not in the field.
SAME_ORIGIN_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'self'; form-action 'none'; object-src 'none'"
)


def page_headers(content_security_policy: str) -> dict[str, str]:
    """Headers of a page: its security policy, and no-cache so that a screen left running
    for weeks picks up a new page after an upgrade."""
    return {
        "Content-Security-Policy": content_security_policy,
        "Cache-Control": "no-cache",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
    }


@cache
def template(static_dir: Path) -> str:
    """A page's template, read once."""
    return (static_dir / TEMPLATE).read_text(encoding="utf-8")


class PageAssets(StaticFiles):
    """A page's static folder, revalidated on every load, without its template."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        """Serve one asset; the unrendered template is not one."""
        if os.path.normpath(path) == TEMPLATE:
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
