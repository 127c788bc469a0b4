"""The live part's publisher and change-notice listener, in a process of its own.

``bench.bench_gateway``'s live part runs this beside the process that holds the
subscribers' WebSockets, so that the times taken here (before each publish, at each
change notice) are not held back by decoding the subscribers' frames on the same
event loop.

    python -m bench.live_probe NATS_URL RATE TOTAL

Publishes ``TOTAL`` order events at ``RATE`` per second to the JetStream stream, waits
(at most 30 s) for a change notice that covers the last one, and prints one JSON
object: ``published`` (``time.perf_counter()`` before each publish), ``sequences`` (each
one's stream sequence), ``notices`` (``[version, perf_counter]`` of each change notice),
``seconds`` (the publishing) and ``cpu_seconds`` (this process's, over the same time).
``perf_counter`` is ``CLOCK_MONOTONIC`` on Linux, one clock for every process of the
machine, so the caller compares these times with its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import time
from typing import Any

import nats

from bench.bench_gateway import RATE, bounded, order_event
from pulse_bi.contract import CHANGES_SUBJECT, notice_decoder


async def probe(url: str, rate: int, total: int) -> dict[str, Any]:
    """Publish ``total`` events at ``rate``/s; time each publish and each change notice."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    notices: list[tuple[int, float]] = []
    covered = asyncio.Event()
    last = [0]

    async def on_notice(msg: Any) -> None:
        notice = notice_decoder.decode(msg.data)
        if notice.kind == "change":
            notices.append((notice.version, time.perf_counter()))
            if last[0] and notice.version >= last[0]:
                covered.set()

    await nc.subscribe(CHANGES_SUBJECT, cb=on_notice)
    published = [0.0] * total
    sequences = [0] * total
    cpu = time.process_time()
    began = time.perf_counter()
    for index in range(total):
        delay = began + index / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        event_id, data = order_event(dt.datetime.now(dt.UTC))
        published[index] = time.perf_counter()
        ack = await js.publish(
            "pulse.events.orders.created", data, headers={"Nats-Msg-Id": event_id}
        )
        sequences[index] = ack.seq
    seconds = time.perf_counter() - began
    cpu = time.process_time() - cpu
    last[0] = max(sequences, default=0)
    if not sequences or (notices and notices[-1][0] >= last[0]):
        covered.set()  # nothing to wait for
    # On a timeout the caller counts the events no notice covered.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(covered.wait(), 30)
    await nc.drain()
    return {
        "published": published,
        "sequences": sequences,
        "notices": notices,
        "seconds": seconds,
        "cpu_seconds": cpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="the NATS server")
    parser.add_argument("rate", type=RATE, help="events per second")
    parser.add_argument("total", type=bounded(int, 0, 100_000 * 86_400), help="events")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(probe(args.url, args.rate, args.total))), flush=True)


if __name__ == "__main__":
    main()
