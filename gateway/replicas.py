"""Monotonic reads across materializer replicas (docs/SCALING.md, "Monotonic reads").

Each replica applies the stream at its own speed, and NATS hands a request to any member
of the queue group, so two requests for the same query could be answered at versions 120
and then 95: numbers going backwards on a dashboard. The gateway remembers, per query and
parameters, the last result it served; a reply older than that one is not served:

1. the request carries ``Pulse-Min-Version`` (the version served), so a lagging replica
   waits briefly to catch up before it answers;
2. a reply still older is asked for again (NATS may pick another replica), up to
   ``GATEWAY_QUERY_RETRIES`` times;
3. if every answer was older, the result served before is served again: stale by at most
   what the lagging replicas lag, never older than what the client already saw.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

#: A query, its encoded parameters and whether its pages were followed to the end.
Key = tuple[str, bytes, bool]


class Served:
    """The newest result served for each ``Key``, bounded (LRU)."""

    def __init__(self, entries: int) -> None:
        self._entries = max(1, entries)
        self._served: OrderedDict[Key, Any] = OrderedDict()
        #: Replies older than a result already served (asked again or replaced).
        self.older_replies = 0
        #: Times the result served before was served again instead of an older reply.
        self.served_again = 0

    def last(self, key: Key) -> Any | None:
        """The newest result served for ``key`` (``None`` before the first one)."""
        return self._served.get(key)

    def floor(self, key: Key) -> int:
        """The version of the newest result served for ``key`` (0 before the first one)."""
        result = self._served.get(key)
        return 0 if result is None else int(result.version)

    def serve(self, key: Key, result: Any) -> Any:
        """The result to serve now: ``result``, or the newer one served meanwhile."""
        newest = self._served.get(key)
        if newest is not None and newest.version > result.version:
            self.served_again += 1
            self._served.move_to_end(key)
            return newest
        self._served[key] = result
        self._served.move_to_end(key)
        if len(self._served) > self._entries:
            self._served.popitem(last=False)
        return result

    def __len__(self) -> int:
        return len(self._served)
