"""How often the writer's DuckDB calls give up the GIL, and what that costs beside a busy thread.

Run: ``.venv/bin/python -m bench.bench_gil [--events 100000] [--batch 20000] [--repeat 5]``.

DuckDB's Python client releases the GIL while a statement runs and takes it back to
convert parameters, to scan Python objects (a frame's arrays, a vector at a time) and
to build results. Alone in a process, a hand-back costs nothing. Beside another thread
that keeps the GIL busy (the materializer's event loop receiving the stream), every
hand-back waits until that thread lets go: up to the interpreter's switch interval
(``sys.getswitchinterval()``, 5 ms unless changed) when it never blocks.

Each step runs alone, then beside a thread that only counts (``bench_sql_decode.Probe``:
it never blocks, the worst case): wall and thread CPU of each, and the hand-backs that
waited, estimated as the extra wall time over the switch interval. Steps: ``SELECT 1``;
an INSERT of a frame of two numeric columns; an INSERT of a frame of one column of
strings (an object array, as the store hands them over), the same strings built into an
Arrow array and as one list parameter (two ways of handing them over measured and not
taken, docs/BENCHMARKS.md); and the store applying the simulated stream in batches
(``Store.apply_batch``, per batch).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np

from bench.bench_gateway import bounded
from bench.bench_sql_decode import Probe
from materializer.db import MEMORY_LIMIT
from materializer.store import RawMessage, Store
from pulse_bi.simulator import generate


def timed(step: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Mean wall and thread-CPU seconds of ``step`` over ``repeat`` runs."""
    wall, cpu = time.perf_counter(), time.thread_time()
    for _ in range(repeat):
        step()
    return (time.perf_counter() - wall) / repeat, (time.thread_time() - cpu) / repeat


def statements(rows: int) -> dict[str, Callable[[], object]]:
    """The single statements, on an in-memory database with one DuckDB thread."""
    conn = duckdb.connect(config={"threads": 1})
    conn.execute("CREATE TABLE numbers (a BIGINT, b TIMESTAMP)")
    conn.execute("CREATE TABLE texts (a VARCHAR)")
    counts = np.arange(rows, dtype=np.int64)
    numeric = {"a": counts, "b": counts.view("datetime64[us]")}
    words = np.empty(rows, dtype=object)
    words[:] = [f"SKU-{i:06d}" for i in range(rows)]
    texts = {"a": words}

    def select_one() -> object:
        return conn.execute("SELECT 1").fetchall()

    def insert_numbers() -> object:
        frame = numeric  # noqa: F841 - read by DuckDB by its name
        return conn.execute("INSERT INTO numbers SELECT a, b FROM frame")

    def insert_texts() -> object:
        frame = texts  # noqa: F841 - read by DuckDB by its name
        return conn.execute("INSERT INTO texts SELECT a FROM frame")

    listed = words.tolist()

    def insert_arrow_texts() -> object:
        # Built each time, as a batch would build it: Arrow's strings are read without
        # the GIL, but importing pyarrow costs the materializer ~25 MB of RSS
        # (docs/OPERATIONS.md, "Memory").
        import pyarrow as pa

        frame = pa.table({"a": pa.array(listed, pa.string())})  # noqa: F841 - read by DuckDB
        return conn.execute("INSERT INTO texts SELECT a FROM frame")

    def insert_listed_texts() -> object:
        # One parameter: the list is converted in one go, under the GIL.
        return conn.execute("INSERT INTO texts SELECT unnest(?::VARCHAR[])", [listed])

    return {
        "SELECT 1": select_one,
        f"INSERT of {rows:,} rows, 2 numeric columns": insert_numbers,
        f"INSERT of {rows:,} rows, 1 string column": insert_texts,
        f"INSERT of {rows:,} rows, 1 string column built as Arrow": insert_arrow_texts,
        f"INSERT of {rows:,} rows, 1 string column as one list parameter": insert_listed_texts,
    }


def apply_stream(messages: list[RawMessage], batch: int) -> tuple[float, float]:
    """Wall and thread-CPU seconds per batch of applying ``messages`` to a new file."""
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(Path(tmp) / "gil.duckdb", memory_limit=MEMORY_LIMIT, threads=1)
        try:
            batches = range(0, len(messages), batch)
            wall, cpu = time.perf_counter(), time.thread_time()
            for first in batches:
                store.apply_batch(messages[first : first + batch])
            return (
                (time.perf_counter() - wall) / len(batches),
                (time.thread_time() - cpu) / len(batches),
            )
        finally:
            store.close()


def report(label: str, alone: tuple[float, float], beside: tuple[float, float]) -> float:
    """Print one step's line; return its hand-backs that waited."""
    interval = sys.getswitchinterval()
    waits = max(beside[0] - alone[0], 0.0) / interval
    print(
        f"  {label}: alone {alone[0] * 1e3:.2f} ms (CPU {alone[1] * 1e3:.2f}),"
        f" beside the busy thread {beside[0] * 1e3:.2f} ms (CPU {beside[1] * 1e3:.2f}):"
        f" ~{waits:.0f} hand-backs waited"
    )
    return waits


def main(args: argparse.Namespace) -> dict[str, float]:
    """Print each step's figures; return the hand-backs that waited, by step."""
    print(f"switch interval {sys.getswitchinterval() * 1e3:g} ms; per statement, then per batch:")
    waits: dict[str, float] = {}
    for label, step in statements(args.batch).items():
        step()  # the first run creates what later runs reuse
        alone = timed(step, args.repeat)
        with Probe():
            beside = timed(step, args.repeat)
        waits[label] = report(label, alone, beside)
    received = datetime.now(UTC)
    messages = [
        RawMessage(sequence, m.subject, m.data, received)
        for sequence, m in enumerate(generate(7, args.events).messages, start=1)
    ]
    alone = apply_stream(messages, args.batch)
    with Probe():
        beside = apply_stream(messages, args.batch)
    label = f"Store.apply_batch, {args.events:,} events in batches of {args.batch:,}"
    waits[label] = report(label, alone, beside)
    return waits


def arguments() -> argparse.ArgumentParser:
    """The command line: counts within bounds, or a clear error."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=bounded(int, 1, 10_000_000), default=100_000)
    parser.add_argument("--batch", type=bounded(int, 1, 1_000_000), default=20_000)
    parser.add_argument("--repeat", type=bounded(int, 1, 1000), default=5)
    return parser


if __name__ == "__main__":
    main(arguments().parse_args())
