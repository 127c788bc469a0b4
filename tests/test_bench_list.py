"""``make bench`` (``python -m bench``) lists every benchmark with what it measures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.__main__ import summaries

ROOT = Path(__file__).parents[1]


def test_every_benchmark_says_what_it_measures() -> None:
    listed = summaries(ROOT / "bench")
    assert {"bench_ingest", "bench_statements", "soak"} <= {name for name, _ in listed}
    assert [name for name, summary in listed if not summary] == []


def test_python_m_bench_lists_them() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert "bench.bench_rss: RSS of real" in done.stdout
