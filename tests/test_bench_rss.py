"""``bench_rss --allocators``: the probe's report of a real process, parsed back."""

from __future__ import annotations

import importlib.util
import math
import os
import re
from pathlib import Path

import duckdb

from bench import bench_rss


def test_the_probe_reports_every_allocator_and_bench_rss_reads_it(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("rss_probe", bench_rss.PROBE / "sitecustomize.py")
    assert spec is not None and spec.loader is not None
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)  # RSS_PROBE unset here: no watcher thread
    conn = duckdb.connect()  # holds a table while the probe looks: jemalloc has some
    conn.execute("CREATE TABLE t AS SELECT range AS i FROM range(200000)")
    probe._dump(tmp_path / f"{os.getpid()}.txt")
    conn.close()
    line = bench_rss.allocators(tmp_path, os.getpid())
    numbers = [float(n) for n in re.findall(r"(\d+(?:\.\d+)?|nan) MB", line)]
    assert line.startswith("pymalloc ") and len(numbers) == 6, line
    assert all(not math.isnan(n) and n > 0 for n in numbers), line
    arenas_mb, blocks_mb = numbers[:2]
    assert blocks_mb <= arenas_mb


def test_a_missing_number_reads_as_nan_not_a_crash() -> None:
    assert math.isnan(bench_rss._number("nothing here", "system bytes"))
    assert bench_rss._number("system bytes     =  2,097,152", "system bytes") == 2.0
