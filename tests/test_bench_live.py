"""``bench_gateway``'s live part: the publisher process times what the figures need."""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from bench.bench_gateway import (
    LIVE_SECONDS,
    LIVE_SUBSCRIBERS,
    RATE,
    _arrival_latencies,
    _notice_latencies,
)
from bench.live_probe import SUBJECT, _events, probe
from pulse_bi.natsserver import LocalNatsServer


@pytest.mark.parametrize("acked", [False, True])
async def test_probe_times_each_publish_and_the_notices_that_cover_them(
    nats_server: LocalNatsServer, materializer: Any, js: JetStreamContext, acked: bool
) -> None:
    before = await js.publish(SUBJECT, b"{}")  # the stream does not start empty
    measured = await probe(nats_server.url, rate=200, total=30, acked=acked)
    sequences, published = measured["sequences"], measured["published"]
    assert sequences == list(range(before.seq + 1, before.seq + 31))
    assert published == sorted(published) and published[0] > 0
    assert measured["seconds"] >= 29 / 200 and measured["cpu_seconds"] > 0
    # The materializer's notices cover the last event: every event gets a latency.
    assert measured["notices"][-1][0] >= sequences[-1]
    latencies = _notice_latencies(measured["notices"], sequences, published)
    assert len(latencies) == 30 and min(latencies) > 0
    # Each event had ids of its own: all 30 were applied, none a duplicate.
    state = await asyncio.to_thread(materializer.store.stats)
    assert (state["events_applied"], state["events_duplicate"]) == (30, 0)


@pytest.mark.parametrize("total", [0, 1, 500])
def test_the_probes_events_are_valid_orders_each_with_ids_of_its_own(total: int) -> None:
    events = list(_events(total))
    assert len(events) == total
    decoded = [json.loads(data) for _, data in events]
    assert [event["id"] for event in decoded] == [event_id for event_id, _ in events]
    assert len({event["id"] for event in decoded}) == total
    assert len({event["data"]["order_id"] for event in decoded}) == total
    assert all(event["type"] == "order.created" for event in decoded)


async def test_probe_publishing_without_acks_fails_when_another_publisher_shares_the_stream(
    nats_server: LocalNatsServer, nc: NATS, js: JetStreamContext
) -> None:
    # Without acks, the probe counts on the stream's next sequences being its own. The
    # other publisher sends once the probe's first event is out (the probe has read
    # where the stream ended), while the probe has 2 s of events left to publish.
    started = asyncio.Event()

    async def on_event(_: Any) -> None:
        started.set()

    await nc.subscribe(SUBJECT, cb=on_event)
    running = asyncio.create_task(probe(nats_server.url, rate=100, total=200))
    await asyncio.wait_for(started.wait(), 30)
    await js.publish(SUBJECT, b"{}")
    with pytest.raises(RuntimeError, match="something else published"):
        await running


def test_a_subscriber_result_times_every_event_it_includes_once() -> None:
    published = [0.0, 1.0, 2.0, 3.0]
    # Results with 2 events at 5 s, again 2 (unchanged) at 6 s, then all 4 at 7 s.
    seen = [(2, 5.0), (2, 6.0), (4, 7.0)]
    assert _arrival_latencies(seen, published) == [5.0, 4.0, 5.0, 4.0]


@pytest.mark.parametrize(
    ("kind", "text"),
    [
        (RATE, "0"),
        (RATE, "-5"),
        (RATE, "100001"),
        (RATE, "1.5"),
        (RATE, ""),
        (RATE, "ten"),
        (LIVE_SECONDS, "0"),
        (LIVE_SECONDS, "nan"),
        (LIVE_SECONDS, "inf"),
        (LIVE_SECONDS, "1e400"),
        (LIVE_SUBSCRIBERS, "0"),
        (LIVE_SUBSCRIBERS, "99999999999999999999999"),
    ],
)
def test_the_live_part_refuses_rates_lengths_and_subscribers_it_cannot_run(
    kind: Any, text: str
) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        kind(text)


@given(st.text(max_size=30))
def test_a_bounded_argument_is_in_range_or_a_clear_error(text: str) -> None:
    try:
        value = LIVE_SECONDS(text)
    except argparse.ArgumentTypeError as error:
        assert str(error)
    else:
        assert 0.1 <= value <= 86_400


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["0", "5"], "not between 1 and 100000"),
        (["10", "-1"], "not between 0 and"),
        (["10", "ten"], "not a number: 'ten'"),
        (["10", "99999999999999999999"], "not between 0 and"),
        (["10", "5", "--publish", "nope"], "invalid choice: 'nope'"),
        (["10", "5", "--publish", ""], "invalid choice: ''"),
        (["10", "5", "--publish", "ACKED"], "invalid choice: 'ACKED'"),
    ],
)
def test_the_probe_refuses_what_it_cannot_run_before_it_connects(
    args: list[str], message: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.live_probe", "nats://127.0.0.1:1", *args],
        cwd=Path(__file__).parents[1],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert message in done.stderr
