"""``bench_rss --allocators``: the probe's report of a real process, parsed back."""

from __future__ import annotations

import importlib.util
import math
import os
import re
import tracemalloc
from pathlib import Path
from typing import Any

import duckdb

from bench import bench_rss


def _probe() -> Any:
    spec = importlib.util.spec_from_file_location("rss_probe", bench_rss.PROBE / "sitecustomize.py")
    assert spec is not None and spec.loader is not None
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)  # RSS_PROBE unset here: no watcher thread
    return probe


def test_the_probe_reports_every_allocator_and_bench_rss_reads_it(tmp_path: Path) -> None:
    probe = _probe()
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


def test_the_probe_names_where_the_survivors_of_a_peak_were_allocated() -> None:
    probe = _probe()
    assert probe._pinning() == []  # not under tracemalloc: nothing to tell
    tracemalloc.start(1)
    try:
        peak = [f"peak object {n}" for n in range(200_000)]  # ~14 MB of small strings
        survivors = peak[::4000]  # one in each ~280 KB: every MiB they took stays
        del peak
        lines = probe._pinning()
    finally:
        tracemalloc.stop()
    here = f"{__file__}:{_line_of('peak = [')}"
    found = [line for line in lines if here in line]
    assert lines[0].startswith("pinning summary: ")
    assert found, lines
    kept = re.match(r"pinning (\d+) MiB alone, in (\d+) MiB, (\d+) objects", found[0])
    assert kept is not None, found[0]
    alone, present, objects = (int(n) for n in kept.groups())
    assert alone >= 5 and present >= alone and objects >= len(survivors) // 2
    assert "str 'peak object" in found[0]


def _line_of(text: str) -> int:
    lines = Path(__file__).read_text().splitlines()
    return next(n for n, line in enumerate(lines, 1) if line.strip().startswith(text))


def test_a_missing_number_reads_as_nan_not_a_crash() -> None:
    assert math.isnan(bench_rss._number("nothing here", "system bytes"))
    assert bench_rss._number("system bytes     =  2,097,152", "system bytes") == 2.0
