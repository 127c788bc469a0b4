"""The live part's publisher and change-notice listener, in a process of its own.

``bench.bench_gateway``'s live part runs this beside the process that holds the
subscribers' WebSockets, so that the times taken here (before each publish, at each
change notice) are not held back by decoding the subscribers' frames on the same
event loop.

    python -m bench.live_probe NATS_URL RATE TOTAL [--publish core|acked]

Publishes ``TOTAL`` order events at ``RATE`` per second to the JetStream stream, waits
(at most 30 s) for a change notice that covers the last one, and prints one JSON
object: ``published`` (``time.perf_counter()`` before each publish), ``sequences`` (each
one's stream sequence), ``notices`` (``[version, perf_counter]`` of each change notice),
``seconds`` (the publishing) and ``cpu_seconds`` (this process's, over the same time).
``perf_counter`` is ``CLOCK_MONOTONIC`` on Linux, one clock for every process of the
machine, so the caller compares these times with its own.

The events stand for an ERP's, which publishes from another machine. One is built
before the timed loop and the others are its bytes with fresh ids, which costs the
probe less CPU than building each. By default (``core``) they are published without
waiting for JetStream's acknowledgement, the way a producer that pipelines its
publishes loads the server; even so the probe takes a share of the two cores the
system under test has that an off-box producer would not. Their sequences are the
stream's next ones, checked against the stream once all are stored: a run where
anything else published or an event was not stored fails. ``acked`` awaits each
acknowledgement and reads the sequence from it, as before 2026-12-03.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import nats

from bench.bench_gateway import PUBLISH, RATE, bounded, order_event
from pulse_bi.contract import CHANGES_SUBJECT, STREAM_NAME, notice_decoder

SUBJECT = "pulse.events.orders.created"
#: How long the stream may take to store the last event published without an ack.
STORE_SECONDS = 10.0


async def probe(url: str, rate: int, total: int, *, acked: bool = False) -> dict[str, Any]:
    """Publish ``total`` events at ``rate``/s; time each publish and each change notice."""
    events = _events(total)
    nc = await nats.connect(url)
    js = nc.jetstream()
    first = (await js.stream_info(STREAM_NAME)).state.last_seq + 1
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
        event_id, data = next(events)
        headers = {"Nats-Msg-Id": event_id}
        published[index] = time.perf_counter()
        if acked:
            sequences[index] = (await js.publish(SUBJECT, data, headers=headers)).seq
        else:
            await nc.publish(SUBJECT, data, headers=headers)
    seconds = time.perf_counter() - began
    cpu = time.process_time() - cpu
    if not acked:
        sequences = await _stored(js, first, total)
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


def _events(total: int) -> Iterator[tuple[str, bytes]]:
    """``total`` order events (id, JSON) of the current hour, each with ids of its own:
    one built by ``order_event``, the others its bytes with new event and order ids."""
    event_id, data = order_event(dt.datetime.now(dt.UTC))
    order_id = json.loads(data)["data"]["order_id"]
    ids = (event_id.encode(), order_id.encode())
    for _ in range(total):
        new_event, new_order = uuid.uuid4().hex, uuid.uuid4().hex
        yield (
            new_event,
            data.replace(ids[0], new_event.encode()).replace(ids[1], new_order.encode()),
        )


async def _stored(js: Any, first: int, total: int) -> list[int]:
    """The sequences of ``total`` events published without acks from ``first`` on, once
    the stream holds them; an error when it holds other messages or too few."""
    last = first + total - 1
    deadline = time.perf_counter() + STORE_SECONDS
    while True:
        stored = (await js.stream_info(STREAM_NAME)).state.last_seq
        if stored >= last or time.perf_counter() > deadline:
            break
        await asyncio.sleep(0.05)
    if stored != last:
        raise RuntimeError(
            f"the stream ends at {stored}, not at {last}: something else published "
            "or some events were not stored, so their sequences are unknown"
        )
    return list(range(first, last + 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="the NATS server")
    parser.add_argument("rate", type=RATE, help="events per second")
    parser.add_argument("total", type=bounded(int, 0, 100_000 * 86_400), help="events")
    parser.add_argument(
        "--publish", choices=PUBLISH, default=PUBLISH[0], help="wait for each ack, or not"
    )
    args = parser.parse_args()
    measured = asyncio.run(probe(args.url, args.rate, args.total, acked=args.publish == "acked"))
    print(json.dumps(measured), flush=True)


if __name__ == "__main__":
    main()
