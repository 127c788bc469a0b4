"""The memory instrument (bench/bench_memory.py): its figures come from a real store and
add up, and a short run applies batches, answers queries and reports the trimmed heap."""

from __future__ import annotations

import itertools
import re
import sys
from pathlib import Path

import psutil
import pytest

from bench import bench_memory
from bench.bench_apply import generate
from materializer.store import Store


def test_a_sample_reads_the_store_and_the_allocator(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "m.duckdb", memory_limit="64MB", threads=1)
    try:
        store.apply_batch(list(itertools.islice(generate(500), 500)))
        figures = bench_memory.sample(store, psutil.Process(), 1)
    finally:
        store.close()
    assert figures["batches"] == 1
    assert 0 < figures["uss"] <= figures["rss"]
    assert figures["heap_used"] > 0 and figures["heap_free"] >= 0
    assert figures["seen"] > 0 and figures["recent"] > 0
    tags = {k for k in figures if k.startswith("duckdb:")}
    assert tags and figures["duckdb"] == pytest.approx(sum(figures[k] for k in tags))


def test_a_short_run_applies_batches_and_answers_every_query(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    answered: list[str] = []
    query = Store.query

    def counted(self: Store, name: str, params: object, **kwargs: object) -> object:
        result = query(self, name, params, **kwargs)  # type: ignore[arg-type]
        answered.append(name)
        return result

    monkeypatch.setattr(Store, "query", counted)
    argv = ["bench_memory", "--prefill", "1000", "--minutes", "0.05", "--sample", "1"]
    argv += ["--queries", "7", "--path", str(tmp_path / "run.duckdb")]
    monkeypatch.setattr(sys, "argv", argv)
    bench_memory.main()
    out = capsys.readouterr().out
    batches = [int(n) for n in re.findall(r"^\s*(\d+) batches", out, re.M)]
    assert batches and batches[-1] > 0
    assert "after gc.collect() and malloc_trim(0):" in out
    assert set(answered) == {name for name, _ in bench_memory.QUERIES}
