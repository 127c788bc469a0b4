"""Why small batches group their delta rows in Python: a DuckDB ``GROUP BY`` of a few
dozen rows against scanning them, and against ``deltas.group_in_python``.

Run: ``.venv/bin/python -m bench.bench_group_by [--rows 40] [--repeat 2000]``.
One DuckDB thread, as the writer runs. The rows are a batch's stock movements (sku,
warehouse, site, quantity, time) over ``--keys`` keys; each figure is the median of
``--repeat`` runs, in microseconds.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb

from materializer.aggregates import columns, deltas
from materializer.aggregates.stock import _DELTA_ROWS as KINDS


def median_us(step: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e6


def main(args: argparse.Namespace) -> None:
    start = datetime(2026, 11, 25, tzinfo=UTC)
    rows = [
        ((f"SKU-{i % args.keys}", "W1", ""), (i - 20, start + timedelta(seconds=i)))
        for i in range(args.rows)
    ]
    frame = {
        "sku": columns.strings(k[0] for k, _ in rows),
        "warehouse": columns.strings(k[1] for k, _ in rows),
        "site": columns.strings(k[2] for k, _ in rows),
        "quantity_delta": columns.ints(v[0] for _, v in rows),
        "time": columns.times(v[1] for _, v in rows),
    }
    conn = duckdb.connect(config={"threads": 1})
    conn.execute("SET TimeZone = 'UTC'")
    scanned = columns.values(frame)  # noqa: F841 - read by DuckDB below
    # Once, outside the timing: the rows as a table of their types.
    conn.execute(f"CREATE TEMP TABLE batch AS SELECT {columns.reads(frame)} FROM scanned")

    def in_python() -> None:
        grouped = deltas.group_in_python(iter(rows), 1, KINDS)
        values = columns.values(grouped)  # noqa: F841 - read by DuckDB below
        conn.execute(f"SELECT {columns.reads(grouped)} FROM values").fetchall()

    figures = {
        "scan the rows": lambda: conn.execute("SELECT count(*) FROM batch").fetchall(),
        "GROUP BY in DuckDB": lambda: conn.execute(
            "SELECT sku, warehouse, site, sum(quantity_delta), max(time) FROM batch GROUP BY ALL"
        ).fetchall(),
        "group_in_python, then scan the groups": in_python,
    }
    print(f"{args.rows} rows, {args.keys} keys, median of {args.repeat}:")
    for label, step in figures.items():
        print(f"  {label}: {median_us(step, args.repeat):.0f} us")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=40)
    parser.add_argument("--keys", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=2000)
    main(parser.parse_args())
