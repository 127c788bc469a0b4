"""Do small commits go on while another connection checkpoints? (DuckDB's concurrent
checkpoints: commits that only insert may proceed, duckdb/duckdb#20052.)

Run: ``.venv/bin/python -m bench.bench_checkpoint_beside [--update]``. A table without
indexes gets a WAL of ~30 MB in 400-row commits; then one connection commits 25 rows
every 5 ms (``--update``: and updates a one-row table in the same transaction, as every
batch of the materializer updated ``pipeline_state`` before schema migration 16) while
another runs ``CHECKPOINT``.
Prints how long the checkpoint took (or why DuckDB refused it) and how long the commits
that started during it took.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from typing import Any

import duckdb
import numpy as np


def rows(first: int, count: int) -> dict[str, Any]:
    """``count`` rows for ``t``: DuckDB scans the dict in the caller's frame as ``f``."""
    return {
        "a": np.arange(first, first + count),
        "b": np.array([f"v{j}" for j in range(count)], dtype=object),
        "c": np.random.rand(count),
    }


def main(args: argparse.Namespace) -> None:
    path = os.path.join(tempfile.mkdtemp(), "beside.duckdb")
    con = duckdb.connect(path, config={"threads": 1, "checkpoint_threshold": "1GB"})
    con.execute("CREATE TABLE t (a BIGINT, b VARCHAR, c DOUBLE)")
    con.execute("CREATE TABLE s (id INTEGER, n BIGINT)")
    con.execute("INSERT INTO s VALUES (1, 0)")
    con.execute("CHECKPOINT")
    writer = con.cursor()
    for i in range(args.commits):
        f = rows(i * 400, 400)  # read by DuckDB below
        writer.execute("BEGIN")
        writer.execute("INSERT INTO t SELECT * FROM f")
        writer.execute("COMMIT")
    print(f"WAL before the checkpoint: {os.path.getsize(path + '.wal') / 2**20:.1f} MB")
    span: dict[str, Any] = {}

    def checkpoint() -> None:
        cur = con.cursor()
        span["start"] = time.perf_counter()
        try:
            cur.execute("CHECKPOINT")
            span["outcome"] = "done"
        except duckdb.Error as error:
            span["outcome"] = f"refused: {str(error)[:90]}"
        span["end"] = time.perf_counter()

    commits: list[tuple[float, float]] = []
    thread = threading.Thread(target=checkpoint)
    stop = time.perf_counter() + 3.0
    while time.perf_counter() < stop:
        if not thread.is_alive() and "start" not in span and time.perf_counter() > stop - 2.5:
            thread.start()
        f = rows(0, 25)  # noqa: F841 - read by DuckDB
        started = time.perf_counter()
        writer.execute("BEGIN")
        writer.execute("INSERT INTO t SELECT * FROM f")
        if args.update:
            writer.execute("UPDATE s SET n = n + 25 WHERE id = 1")
        writer.execute("COMMIT")
        commits.append((started, time.perf_counter() - started))
        time.sleep(0.005)
    thread.join()
    during = [took for began, took in commits if span["start"] <= began <= span["end"]]
    others = sorted(took for _, took in commits)
    print(
        f"{'insert and update' if args.update else 'insert only'}: checkpoint"
        f" {span['outcome']} in {(span['end'] - span['start']) * 1e3:.0f} ms;"
        f" {len(during)} commits started during it, the longest"
        f" {max(during, default=0) * 1e3:.0f} ms; all commits p50"
        f" {others[len(others) // 2] * 1e3:.1f} ms"
    )
    con.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--update", action="store_true")
    parser.add_argument("--commits", type=int, default=1500, help="400-row commits before")
    main(parser.parse_args())
