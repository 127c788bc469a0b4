"""What a statement costs in DuckDB whatever it does: the floor under a small batch.

Run: ``PYTHONPATH=. .venv/bin/python -m bench.bench_statement_floor [--repeat 400]``.
A throwaway file opened as the materializer opens its own (``Store.open``: the memory
limit, one DuckDB thread, the file attached and used), then each statement timed
(wall, ``perf_counter``) inside a transaction, as a batch runs it, median of
``--repeat``: ``SELECT 1``; a point read and an update of a one-row table shaped like
``pipeline_state``; an append of a 25-row frame; ``SET SESSION enable_optimizer``; the
append and the update again with DuckDB's optimizer off; and COMMIT after appends to 1,
2, 4 and 8 tables (what a COMMIT costs per table it writes, its fsync included). A small
batch pays this floor for each of its statements (docs/BENCHMARKS.md, "The floor under
a small batch").
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from bench.bench_gateway import bounded
from materializer.db import MEMORY_LIMIT
from materializer.store import Store

_UPDATE = (
    "UPDATE floor_state SET last_sequence = ?, applied = applied + ?, rejected = rejected + ?,"
    " batches = batches + 1, last_event_time = greatest(last_event_time, ?::TIMESTAMPTZ),"
    " last_batch_at = ? WHERE id = 1"
)
_TABLES = 8


def _frame() -> dict[str, Any]:
    """25 rows of a sequence and a 30-character label, as arrays DuckDB scans."""
    return {"sequence": np.arange(25), "label": np.array(["x" * 30] * 25, dtype=object)}


def timed(conn: duckdb.DuckDBPyConnection, statement: Callable[[], object], repeat: int) -> float:
    """Median wall time (µs) of ``statement`` inside a transaction of its own."""
    times = []
    for _ in range(repeat):
        conn.execute("BEGIN")
        started = time.perf_counter()
        statement()
        times.append(time.perf_counter() - started)
        conn.execute("ROLLBACK")
    return statistics.median(times) * 1e6


def commit_after(conn: duckdb.DuckDBPyConnection, tables: int, repeat: int) -> float:
    """Median wall time (µs) of a COMMIT after a 25-row append to each of ``tables``."""
    frame = _frame()  # noqa: F841 - read by DuckDB below
    times = []
    for _ in range(repeat):
        conn.execute("BEGIN")
        for table in range(tables):
            conn.execute(f"INSERT INTO floor_t{table} SELECT * FROM frame")
        started = time.perf_counter()
        conn.execute("COMMIT")
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e6


def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(Path(tmp) / "floor.duckdb", memory_limit=MEMORY_LIMIT, threads=1)
        conn = store.conn
        conn.execute(
            "CREATE TABLE floor_state (id INTEGER PRIMARY KEY, last_sequence BIGINT,"
            " applied BIGINT, rejected BIGINT, batches BIGINT, last_event_time TIMESTAMPTZ,"
            " last_batch_at TIMESTAMPTZ)"
        )
        conn.execute("INSERT INTO floor_state VALUES (1, 0, 0, 0, 0, NULL, NULL)")
        for table in range(_TABLES):
            conn.execute(f"CREATE TABLE floor_t{table} (sequence BIGINT, label VARCHAR)")
        frame = _frame()
        now = datetime.now(UTC)
        repeat = args.repeat

        def append(frame: dict[str, Any] = frame) -> object:  # DuckDB reads ``frame``
            return conn.execute("INSERT INTO floor_t0 SELECT * FROM frame")

        def update() -> object:
            return conn.execute(_UPDATE, [1, 25, 0, now, now])

        rows = [
            ("SELECT 1", timed(conn, lambda: conn.execute("SELECT 1").fetchall(), repeat)),
            (
                "point read of a one-row table",
                timed(
                    conn,
                    lambda: conn.execute(
                        "SELECT last_sequence FROM floor_state WHERE id = 1"
                    ).fetchall(),
                    repeat,
                ),
            ),
            ("update of that row (7 columns)", timed(conn, update, repeat)),
            ("append of a 25-row frame", timed(conn, append, repeat)),
            (
                "SET SESSION enable_optimizer",
                timed(conn, lambda: conn.execute("SET SESSION enable_optimizer = true"), repeat),
            ),
        ]
        conn.execute("SET SESSION enable_optimizer = false")
        rows += [
            ("update, the optimizer off", timed(conn, update, repeat)),
            ("append, the optimizer off", timed(conn, append, repeat)),
        ]
        conn.execute("SET SESSION enable_optimizer = true")
        rows += [
            (f"COMMIT after appends to {n} table(s)", commit_after(conn, n, repeat))
            for n in (1, 2, 4, 8)
        ]
        store.close()
    print(f"median of {repeat}, wall, in a transaction:")
    for label, micros in rows:
        print(f"  {label:<38} {micros:8.0f} us")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=bounded(int, 1, 100_000), default=400)
    main(parser.parse_args())
