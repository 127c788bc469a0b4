"""bench_write_steps: the writer's CPU split by step, each part measured where it lies,
and the code it times left as it found it."""

from __future__ import annotations

import argparse

import pytest

from bench import bench_write_steps
from materializer import events
from materializer.aggregates import AGGREGATES, pipeline
from materializer.store import Store


def test_every_step_is_timed_and_the_remainders_are_what_lies_between(
    capsys: pytest.CaptureFixture[str],
) -> None:
    originals = [Store._apply, Store._resolve_keys, events.decode, pipeline.record]
    originals += [module.apply for module in AGGREGATES]
    figures = bench_write_steps.main(argparse.Namespace(events=600, batch=200))
    assert figures.pop("total") > 0 and figures.pop("total without the timers") > 0
    for label in ("decode and validate", "sales", "seen ids and keys"):
        assert figures[label] > 0, label
    # The last two parts are differences: the steps must lie inside the transaction's
    # timer (the loop around them is left) and the transaction inside the total (the
    # COMMIT is left), or one of them comes out negative.
    assert figures["Accepted objects, grouping"] > 0
    assert figures["COMMIT, seen-id index, gaps"] > 0
    out = capsys.readouterr().out
    assert out.startswith("600 events, batches of 200")
    assert "COMMIT, seen-id index, gaps" in out and "total without the timers:" in out
    after = [Store._apply, Store._resolve_keys, events.decode, pipeline.record]
    after += [module.apply for module in AGGREGATES]
    assert after == originals
