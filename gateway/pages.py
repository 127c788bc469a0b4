"""What the gateway's own pages (kiosk, landing page, GraphiQL) share: their assets.

Each page is an ``index.html`` template rendered per request next to its static assets.
The assets are served with ``Cache-Control: no-cache`` (revalidated by ETag on every load,
so an upgrade shows at once, and nothing is fetched from elsewhere: docs/KIOSK.md) and
``nosniff``; the unrendered template is not one of them.
"""

from __future__ import annotations

import os

from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

#: The page template in each page's static folder, rendered by its module.
TEMPLATE = "index.html"


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
