"""``bench_gateway``'s live part: the publisher process times what the figures need."""

from __future__ import annotations

from typing import Any

from bench.bench_gateway import _arrival_latencies, _notice_latencies
from bench.live_probe import probe
from pulse_bi.natsserver import LocalNatsServer


async def test_probe_times_each_publish_and_the_notices_that_cover_them(
    nats_server: LocalNatsServer, materializer: Any
) -> None:
    measured = await probe(nats_server.url, rate=200, total=30)
    sequences, published = measured["sequences"], measured["published"]
    assert sequences == sorted(set(sequences)) and len(sequences) == 30
    assert published == sorted(published) and published[0] > 0
    assert measured["seconds"] >= 29 / 200 and measured["cpu_seconds"] > 0
    # The materializer's notices cover the last event: every event gets a latency.
    assert measured["notices"][-1][0] >= sequences[-1]
    latencies = _notice_latencies(measured["notices"], sequences, published)
    assert len(latencies) == 30 and min(latencies) > 0


def test_a_subscriber_result_times_every_event_it_includes_once() -> None:
    published = [0.0, 1.0, 2.0, 3.0]
    # Results with 2 events at 5 s, again 2 (unchanged) at 6 s, then all 4 at 7 s.
    seen = [(2, 5.0), (2, 6.0), (4, 7.0)]
    assert _arrival_latencies(seen, published) == [5.0, 4.0, 5.0, 4.0]
