"""What the slow batches are at a steady rate: every batch's time and steps, DuckDB's
automatic checkpoints and the delta folds, on one timeline.

Run: ``.venv/bin/python -m bench.bench_batches [--rate 1000] [--seconds 150]``.
An in-process materializer on a fresh stream and file (``bench_ingest.notice_latency``:
events published one ack at a time at ``--rate``), with the product's settings and those
in this process's environment (``DUCKDB_CHECKPOINT_THRESHOLD=4MB`` …). Recorded: each
batch's wall and CPU time and the time of each aggregate's ``apply`` in it, the WAL's size
every 20 ms (a drop is a checkpoint), each fold (``Store.compact``: the aggregate deltas or
the staged raw rows) and each of the materializer's checkpoints (``Store.checkpoint``),
with its duration. Prints the latency and batch percentiles, the checkpoints and folds,
which of them the events over the 50 ms target waited through (publish to notice
overlapping a checkpoint, a fold, or neither: then behind slow batches), and the slowest
batches with what they spent their time on.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.bench_ingest import bench_settings, notice_latency, percentile
from bench.bench_write_steps import timed
from materializer.aggregates import AGGREGATES, pipeline
from materializer.store import Store
from pulse_bi.natsserver import LocalNatsServer

#: The publish → change notice target at 1,000 events/s: p99 ≤ 50 ms (issue 12).
TARGET_MS = 50.0


class Timeline:
    """Batches, folds and checkpoints, timed from the first batch."""

    def __init__(self) -> None:
        self.steps: dict[str, float] = {}
        #: (monotonic time, wall ms, CPU ms, messages, ms per step over 1 ms)
        self.batches: list[tuple[float, float, float, int, dict[str, int]]] = []
        self.folds: list[tuple[float, float]] = []  # (monotonic time, ms)
        self.checkpoints: list[tuple[float, int]] = []  # (monotonic time, WAL bytes before)
        #: ("checkpoint" or "fold", start, end): ``time.perf_counter``, as the events' times
        self.stalls: list[tuple[str, float, float]] = []

    def time_step(self, owner: Any, name: str, label: str) -> None:
        """Add the wall time of ``owner.name`` to the current batch's ``label``."""
        timed(owner, name, label, self.steps, time.perf_counter)

    def instrument(self) -> None:
        """Wrap the store's batch, fold and aggregate steps (this process only)."""
        for module in AGGREGATES:
            self.time_step(module, "apply", module.__name__.rsplit(".", 1)[-1])
        self.time_step(pipeline, "record", "pipeline")
        # Everything before the COMMIT: the batch's wall time less this is the COMMIT.
        self.time_step(Store, "_apply", "before COMMIT")
        apply_batch, compact, checkpoint = Store.apply_batch, Store.compact, Store.checkpoint

        def batch(store: Store, messages: Any) -> Any:
            self.steps.clear()
            started, cpu = time.perf_counter(), time.thread_time()
            try:
                return apply_batch(store, messages)
            finally:
                wall = (time.perf_counter() - started) * 1000
                steps = {k: round(v * 1000) for k, v in self.steps.items() if v >= 0.001}
                cpu_ms = (time.thread_time() - cpu) * 1000
                self.batches.append((time.monotonic(), wall, cpu_ms, len(messages), steps))

        def fold(store: Store, **which: bool) -> None:
            started, at = time.monotonic(), time.perf_counter()
            compact(store, **which)
            self.folds.append((started, (time.monotonic() - started) * 1000))
            self.stalls.append(("fold", at, time.perf_counter()))

        def checkpointed(store: Store, *, force: bool = False) -> bool:
            at = time.perf_counter()
            try:
                return checkpoint(store, force=force)
            finally:
                self.stalls.append(("checkpoint", at, time.perf_counter()))

        Store.apply_batch = batch  # type: ignore[method-assign]
        Store.compact = fold  # type: ignore[method-assign]
        Store.checkpoint = checkpointed  # type: ignore[method-assign]

    def waited_through(self, events: list[tuple[float, float]], over_ms: float) -> dict[str, int]:
        """The events (publish, notice) slower than ``over_ms``, by the first checkpoint
        or fold that ran between their publish and their notice ("neither": none did)."""
        counts = {"checkpoint": 0, "fold": 0, "neither": 0}
        for sent, noticed in events:
            if (noticed - sent) * 1000 <= over_ms:
                continue
            kind = next(
                (k for k, start, end in self.stalls if start < noticed and end > sent), "neither"
            )
            counts[kind] += 1
        return counts

    async def watch_wal(self, wal: Path) -> None:
        """Record each drop of the WAL's size (a checkpoint) until cancelled."""
        last = 0
        while True:
            size = wal.stat().st_size if wal.exists() else 0
            if size < last:
                self.checkpoints.append((time.monotonic(), last))
            last = size
            await asyncio.sleep(0.02)


async def main(args: argparse.Namespace) -> None:
    timeline = Timeline()
    timeline.instrument()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        server = LocalNatsServer(store_dir=root / "nats").start()
        path = root / "batches.duckdb"
        watcher = asyncio.create_task(timeline.watch_wal(path.with_name(path.name + ".wal")))
        try:
            settings = bench_settings(server.url, path)
            events: list[tuple[float, float]] = []
            latencies = await notice_latency(
                settings, rate=args.rate, seconds=args.seconds, events=events
            )
        finally:
            watcher.cancel()
            server.stop()
    batches = timeline.batches
    start = batches[0][0]
    walls = [wall for _, wall, _, _, _ in batches]
    print(
        f"publish -> notice at {args.rate}/s for {args.seconds:.0f} s: "
        f"p50 {percentile(latencies, 50):.1f} ms, p99 {percentile(latencies, 99):.1f} ms"
    )
    print(
        f"{len(batches)} batches: p50 {percentile(walls, 50):.1f} ms, "
        f"p99 {percentile(walls, 99):.1f} ms, max {max(walls):.1f} ms"
    )
    print(
        "checkpoints (s, WAL MB before): "
        + ", ".join(f"{t - start:.1f} s {size / 2**20:.1f}" for t, size in timeline.checkpoints)
    )
    print("folds (s, ms): " + ", ".join(f"{t - start:.1f} s {ms:.0f}" for t, ms in timeline.folds))
    checkpoints = [(end - at) * 1000 for k, at, end in timeline.stalls if k == "checkpoint"]
    print("the materializer's checkpoints (ms): " + ", ".join(f"{ms:.0f}" for ms in checkpoints))
    slow = timeline.waited_through(events, TARGET_MS)
    print(
        f"events over {TARGET_MS:g} ms: {sum(slow.values())} of {len(events)}"
        f" ({100 * sum(slow.values()) / max(1, len(events)):.2f} %); their publish to notice"
        f" overlapped a checkpoint: {slow['checkpoint']}, a fold: {slow['fold']},"
        f" neither: {slow['neither']}"
    )
    moments = [t for t, _ in timeline.checkpoints] + [t for t, _ in timeline.folds]
    for moment, wall, cpu, count, steps in sorted(batches, key=lambda b: -b[1])[: args.slowest]:
        near = min((abs(moment - t) for t in moments), default=float("inf"))
        print(
            f"  {wall:.0f} ms ({cpu:.0f} ms CPU), {count} events at {moment - start:.1f} s, "
            f"nearest checkpoint or fold {near:.2f} s away; steps (ms): {steps}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=150)
    parser.add_argument("--slowest", type=int, default=8)
    asyncio.run(main(parser.parse_args()))
