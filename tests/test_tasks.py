"""Background tasks stop even when a cancellation is swallowed once (pulse_bi/tasks.py)."""

from __future__ import annotations

import asyncio

from pulse_bi.tasks import cancel_until_done


async def _survives_one_cancellation(stopped: list[str]) -> None:
    """A loop like the heartbeat: errors are logged and it goes on."""
    swallowed = False
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            if swallowed:
                stopped.append("cancelled")
                raise
            swallowed = True  # what nats-py's TimeoutError does to an `except Exception` loop


async def test_a_task_that_swallows_a_cancellation_is_cancelled_again() -> None:
    stopped: list[str] = []
    task = asyncio.create_task(_survives_one_cancellation(stopped))
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_until_done([task], retry=0.05), timeout=5)
    assert task.cancelled() and stopped == ["cancelled"]


async def test_tasks_already_finished_or_failed_are_fine() -> None:
    async def fail() -> None:
        raise RuntimeError("boom")

    done = asyncio.create_task(asyncio.sleep(0))
    failed = asyncio.create_task(fail())
    await asyncio.sleep(0.01)
    await cancel_until_done([done, failed])
    assert done.done() and failed.done()
