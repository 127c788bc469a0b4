"""Compression of HTTP responses: br or gzip, as the client prefers (docs/GATEWAY.md).

A pure ASGI middleware: a response sent in one piece (every GraphQL, REST and page
answer) whose body is at least `GATEWAY_COMPRESSION_MIN_BYTES` is compressed with the
client's preferred coding among br (brotli, quality 4: smaller than gzip and as fast)
and gzip (level 6). Streams (Server-Sent Events, anything sent in several pieces) and
responses already encoded pass untouched. WebSockets have their own permessage-deflate
(GATEWAY_WS_COMPRESSION).
"""

from __future__ import annotations

import gzip

import brotli
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Codings offered, in the server's order of preference when the client's q-values tie.
CODINGS = ("br", "gzip")
BROTLI_QUALITY = 4
GZIP_LEVEL = 6


def choose(accept_encoding: str) -> str | None:
    """The coding to use for an Accept-Encoding header value, or None (RFC 9110 12.5.3)."""
    weights: dict[str, float] = {}
    for part in accept_encoding.split(","):
        coding, *options = (p.strip() for p in part.split(";"))
        coding = coding.lower()
        if not coding:
            continue
        q = 1.0
        for option in options:
            if option.lower().startswith("q="):
                try:
                    q = float(option[2:])
                except ValueError:
                    q = 0.0
        if not 0.0 <= q <= 1.0 or q != q:
            q = 0.0
        weights[coding] = q
    best: tuple[float, int, str] | None = None
    for rank, coding in enumerate(CODINGS):
        q = weights.get(coding, weights.get("*", 0.0))
        if q > 0 and (best is None or q > best[0]):
            best = (q, -rank, coding)
    return best[2] if best else None


def compress(body: bytes, coding: str) -> bytes:
    """The body in one coding of CODINGS."""
    if coding == "br":
        compressed: bytes = brotli.compress(body, quality=BROTLI_QUALITY)
        return compressed
    return gzip.compress(body, GZIP_LEVEL, mtime=0)


class CompressionMiddleware:
    """Compresses single-message responses of at least `minimum_size` bytes."""

    def __init__(self, app: ASGIApp, minimum_size: int = 1024) -> None:
        self.app = app
        self.minimum_size = minimum_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request through; compress the answer when it is worth it."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        coding = choose(Headers(scope=scope).get("accept-encoding", ""))
        if coding is None:
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        passing = False

        async def wrapped(message: Message) -> None:
            nonlocal start, passing
            if passing:
                await send(message)
                return
            if message["type"] == "http.response.start":
                start = message
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            body: bytes = message.get("body", b"")
            headers = MutableHeaders(raw=start["headers"])
            if (
                message.get("more_body", False)
                or len(body) < self.minimum_size
                or "content-encoding" in headers
                or headers.get("content-type", "").startswith("text/event-stream")
            ):
                passing = True
                await send(start)
                await send(message)
                return
            compressed = compress(body, coding)
            headers["content-encoding"] = coding
            headers["content-length"] = str(len(compressed))
            headers.add_vary_header("Accept-Encoding")
            etag = headers.get("etag")
            if etag is not None and not etag.startswith("W/"):
                # Another coding is another representation: only a weak tag still holds.
                headers["etag"] = "W/" + etag
            passing = True
            await send(start)
            await send({"type": "http.response.body", "body": compressed})

        await self.app(scope, receive, wrapped)
