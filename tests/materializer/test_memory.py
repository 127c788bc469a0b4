"""What the materializer process holds in memory (docs/OPERATIONS.md, "Memory"): the
libraries it loads, the rows DuckDB keeps between checkpoints, glibc's arenas."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from bench.bench_apply import generate
from materializer import db
from materializer.app import arrow_on_malloc, limit_malloc_arenas
from materializer.settings import Settings
from materializer.store import Store

ROOT = Path(__file__).parents[2]
#: Modules the materializer's ingest path never needs: the gateway's, and Arrow's Parquet
#: and file-system libraries (8 MB of RSS; the archive imports them when it runs).
#: Nor Arrow's compute functions (5 to 9 MB): the batches build their change notices without.
NOT_LOADED = (
    "gateway",
    "strawberry",
    "pyarrow.parquet",
    "pyarrow.fs",
    "pyarrow.dataset",
    "pyarrow.compute",
    "pandas",
)


def test_the_materializer_does_not_import_what_ingest_never_uses(tmp_path: Path) -> None:
    # Imported, then used: batches of every event type applied and every named query run.
    script = (
        "import json, sys\n"
        "import materializer.app, materializer.store, materializer.lifecycle, pulse_bi.cli\n"
        "from bench.bench_apply import generate\n"
        "from materializer.queries import BadQuery\n"
        "from pulse_bi.contract import QUERIES\n"
        f"store = materializer.store.Store.open({str(tmp_path / 'm.duckdb')!r})\n"
        "messages = list(generate(3000, duplicates=0.01))\n"
        "for start in range(0, len(messages), 500):\n"
        "    store.apply_batch(messages[start : start + 500])\n"
        "assert store.last_sequence() == len(messages)\n"
        "answered = 0\n"
        "for spec in QUERIES:\n"
        "    try:\n"
        "        store.query(spec.name, {})\n"
        "        answered += 1\n"
        "    except BadQuery:\n"
        "        pass  # needs an argument\n"
        "assert answered >= len(QUERIES) // 2, answered\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    loaded = set(json.loads(done.stdout))
    assert "materializer.app" in loaded  # the script ran what it should
    unwanted = [
        m for m in loaded if m in NOT_LOADED or m.startswith(tuple(f"{n}." for n in NOT_LOADED))
    ]
    assert unwanted == []


def _in_memory_rows(store: Store) -> int:
    with store.conn.cursor() as cur:
        row = cur.execute(
            "SELECT coalesce(sum(memory_usage_bytes), 0) FROM duckdb_memory()"
            " WHERE tag = 'IN_MEMORY_TABLE'"
        ).fetchone()
    assert row is not None
    return int(row[0])


def _wal(path: Path) -> int:
    wal = path.with_name(path.name + ".wal")
    return wal.stat().st_size if wal.exists() else 0


def test_checkpoint_threshold_bounds_the_rows_held_between_checkpoints(tmp_path: Path) -> None:
    """Ingest past the threshold without a scheduled checkpoint: DuckDB checkpointed on
    its own (the WAL stayed below the threshold plus one batch, the file grew), and the
    rows it keeps in memory are fewer than with the threshold out of reach."""
    messages = generate(60_000)
    batches = [list(itertools.islice(messages, 10_000)) for _ in range(6)]
    held = {}
    for threshold in ("1MB", "1GB"):
        path = tmp_path / f"{threshold}.duckdb"
        store = Store.open(path)
        try:
            db.set_checkpoint_threshold(store.conn, threshold)
            for batch in batches:
                store.apply_batch(batch)
            held[threshold] = (_in_memory_rows(store), _wal(path), path.stat().st_size)
        finally:
            store.close()
    rows_small, wal_small, file_small = held["1MB"]
    rows_large, wal_large, file_large = held["1GB"]
    assert wal_large > 4 * 2**20  # the run wrote enough WAL to cross the small threshold
    assert wal_small < wal_large
    assert file_small > file_large  # checkpointed into the file
    assert rows_small * 2 < rows_large


def test_the_default_threshold_and_limit_are_the_settings_defaults() -> None:
    assert Settings.from_env({}).duckdb_checkpoint_threshold == db.CHECKPOINT_THRESHOLD
    assert Settings.from_env({}).duckdb_memory_limit == db.MEMORY_LIMIT
    assert Settings.from_env({"DUCKDB_CHECKPOINT_THRESHOLD": ""}).duckdb_checkpoint_threshold == ""


def test_malloc_arena_cap_is_set_by_default_and_zero_leaves_glibc_alone() -> None:
    assert Settings.from_env({}).malloc_arena_max == 2
    assert limit_malloc_arenas(0) is False
    if sys.platform == "linux" and os.confstr("CS_GNU_LIBC_VERSION"):
        assert limit_malloc_arenas(2) is True


def test_arrow_allocates_from_malloc_unless_a_pool_was_chosen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = pa.default_memory_pool()
    try:
        monkeypatch.setenv("ARROW_DEFAULT_MEMORY_POOL", "mimalloc")
        pa.set_memory_pool(pa.mimalloc_memory_pool())
        assert arrow_on_malloc() is False
        assert pa.default_memory_pool().backend_name == "mimalloc"
        monkeypatch.delenv("ARROW_DEFAULT_MEMORY_POOL")
        assert arrow_on_malloc() is True
        assert pa.default_memory_pool().backend_name == "system"
        held = pa.system_memory_pool().bytes_allocated()
        column = pa.array(["a batch's column"] * 1000)
        assert pa.system_memory_pool().bytes_allocated() >= held + column.nbytes
    finally:
        pa.set_memory_pool(before)
