"""Read readiness of one materializer replica (docs/SCALING.md, "Monotonic reads").

Replicas apply the stream at their own speed. Two things keep a lagging one from
answering with old data:

* ``ReadGate``: while the replica is more than ``READ_MAX_LAG`` events behind the stream
  it leaves the read queue group (NATS stops sending it named queries) and joins again
  once it is back within half of that. Health and stats stay answered meanwhile.
* ``wait_for_version``: a request may carry ``Pulse-Min-Version``, the version its asker
  has already served; a replica below it waits up to ``MIN_VERSION_WAIT`` seconds for its
  ingest to get there before it answers (with whatever version it then has: the gateway
  decides whether to serve it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from pulse_bi.contract import MIN_VERSION_HEADER

log = logging.getLogger("pulse_bi.materializer.readiness")

#: Longest wait, in seconds, for this replica to reach a request's minimum version.
MIN_VERSION_WAIT = 0.5


class ReadEndpoints(Protocol):
    """What the gate switches (``QueryService``)."""

    @property
    def reading(self) -> bool: ...

    async def leave_reads(self) -> None: ...

    async def join_reads(self) -> None: ...


class ReadGate:
    """Keeps a replica out of the read queue group while it lags by more than ``max_lag``."""

    def __init__(self, endpoints: ReadEndpoints, lag: Callable[[], int], max_lag: int) -> None:
        self._endpoints = endpoints
        self._lag = lag
        self.max_lag = max_lag
        #: Times the replica left the queue group.
        self.left = 0

    async def check(self) -> None:
        """Leave or join the queue group as the current lag says (0: never leave)."""
        if not self.max_lag:
            return
        lag = self._lag()
        if self._endpoints.reading and lag > self.max_lag:
            await self._endpoints.leave_reads()
            self.left += 1
            log.warning(
                "%d events behind the stream (READ_MAX_LAG %d): not answering named queries "
                "until back within %d",
                lag,
                self.max_lag,
                self.max_lag // 2,
            )
        elif not self._endpoints.reading and lag <= self.max_lag // 2:
            await self._endpoints.join_reads()
            log.info("%d events behind the stream: answering named queries again", lag)

    async def run(self, interval: float) -> None:
        """Check every ``interval`` seconds until cancelled."""
        while True:
            with contextlib.suppress(Exception):  # NATS away: check again next time
                await self.check()
            await asyncio.sleep(interval)


def min_version(headers: dict[str, str] | None) -> int:
    """The ``Pulse-Min-Version`` of a request (0 when absent or not a small whole number)."""
    raw = (headers or {}).get(MIN_VERSION_HEADER, "")
    if not raw or len(raw) > 20 or not raw.isascii() or not raw.isdigit():
        return 0
    return int(raw)


async def wait_for_version(
    wait: Callable[[int, float], Awaitable[None]], version: int, current: int
) -> None:
    """Wait up to ``MIN_VERSION_WAIT`` for ``version``; return early or on time-out."""
    if version <= current:
        return
    with contextlib.suppress(TimeoutError):
        await wait(version, MIN_VERSION_WAIT)
