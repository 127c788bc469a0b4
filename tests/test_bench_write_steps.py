"""bench_write_steps: the writer's CPU split by step adds up to the whole, and the
bench leaves the code it times as it found it."""

from __future__ import annotations

import argparse

import pytest

from bench import bench_write_steps
from materializer import events
from materializer.aggregates import AGGREGATES, pipeline
from materializer.store import Store


def test_the_steps_add_up_to_the_total_and_every_step_is_timed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    originals = [Store._apply, Store._resolve_keys, events.decode, pipeline.record]
    originals += [module.apply for module in AGGREGATES]
    figures = bench_write_steps.main(argparse.Namespace(events=600, batch=200))
    total = figures.pop("total")
    assert figures.pop("total without the timers") > 0
    # The parts are measured apart and the last two by difference: their sum is the total.
    assert sum(figures.values()) == pytest.approx(total, rel=1e-6)
    for label in ("decode and validate", "sales", "seen ids and keys"):
        assert figures[label] > 0, label
    assert figures["COMMIT, seen-id index, gaps"] > 0
    out = capsys.readouterr().out
    assert out.startswith("600 events, batches of 200")
    assert "COMMIT, seen-id index, gaps" in out and "total without the timers:" in out
    after = [Store._apply, Store._resolve_keys, events.decode, pipeline.record]
    after += [module.apply for module in AGGREGATES]
    assert after == originals
