"""bench_batches: which stall each event over the target waited through."""

from __future__ import annotations

from bench.bench_batches import Timeline


def test_each_slow_event_is_put_down_to_the_first_stall_between_its_publish_and_notice() -> None:
    timeline = Timeline()
    timeline.stalls = [("checkpoint", 1.00, 1.08), ("fold", 2.00, 2.05), ("checkpoint", 2.04, 2.1)]
    events = [
        (0.95, 1.10),  # 150 ms, through the first checkpoint
        (1.07, 1.11),  # 40 ms: not over the target
        (1.08, 1.20),  # 120 ms, published as the checkpoint ended: neither
        (1.99, 2.12),  # 130 ms, through the fold and the second checkpoint: the fold first
        (2.06, 2.13),  # 70 ms, through the second checkpoint only
        (3.00, 3.01),  # fast
    ]
    assert timeline.waited_through(events, 50.0) == {"checkpoint": 2, "fold": 1, "neither": 1}
    assert timeline.waited_through(events, 1000.0) == {"checkpoint": 0, "fold": 0, "neither": 0}
