"""Stopping background tasks for good.

nats-py may turn a cancellation that reaches it inside a request or a fetch into a
``TimeoutError``; a loop that survives errors (a heartbeat, a schedule) then goes on as
if nothing happened, and a single ``cancel()`` followed by ``await task`` would wait
forever on shutdown.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable


async def cancel_until_done(tasks: Iterable[asyncio.Task[object]], retry: float = 1.0) -> None:
    """Cancel each task again every ``retry`` seconds until it has finished."""
    for task in tasks:
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=retry)
        if not task.cancelled():
            task.exception()  # retrieved: a task that failed while stopping is not logged
