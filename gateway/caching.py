"""HTTP caching of GraphQL GET responses: ETags from data generations (docs/GATEWAY.md).

A query's answer only changes when the aggregates it reads get a new generation (or the
hour turns: default time windows move with it), so its ETag is derived from those
generations, not from the body: a revalidation (`If-None-Match`) is answered `304` without
executing anything. Generations are this process's own counters, so every tag also
carries a random id of the process: a tag from another replica, or from before a
restart, never matches (the client simply gets the full answer).
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

import msgspec

_key_encoder = msgspec.msgpack.Encoder()


class ETags:
    """Weak ETags for (request key, data stamp) pairs of one gateway process."""

    def __init__(self) -> None:
        self.boot = secrets.token_hex(4)

    def tag(self, key: tuple[Any, ...], stamp: Any) -> str:
        """The weak ETag of the answer to `key` built at `stamp` (generations, hour)."""
        digest = hashlib.blake2b(_key_encoder.encode((key, stamp)), digest_size=12).hexdigest()
        return f'W/"{self.boot}-{digest}"'


def matches(if_none_match: str | None, tag: str) -> bool:
    """Whether an If-None-Match header names this tag (weak comparison, RFC 9110 13.1.2)."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    opaque = tag.removeprefix("W/")
    for candidate in if_none_match.split(","):
        if candidate.strip().removeprefix("W/") == opaque:
            return True
    return False


def cache_control(private: bool) -> str:
    """Cache-Control of a live answer: stored, but revalidated on every use.

    Live data has no freshness lifetime a cache could guess; `no-cache` lets browsers and
    CDNs keep the body and ask with `If-None-Match`, which costs the gateway no execution.
    With JWT auth the answer depends on the caller, so only private caches may keep it.
    """
    return ("private" if private else "public") + ", no-cache"
