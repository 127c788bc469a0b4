"""What the materializer process holds in memory (docs/OPERATIONS.md, "Memory"): the
libraries it loads, the rows DuckDB keeps between checkpoints, glibc's arenas."""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from nats.js import JetStreamContext

from bench.bench_apply import generate
from materializer import db
from materializer.app import Materializer
from materializer.memory import limit_malloc_arenas
from materializer.settings import Settings
from materializer.store import BatchResult, RawMessage, Store
from pulse_bi.simulator import generate as generate_stream

ROOT = Path(__file__).parents[2]
#: Modules the materializer never needs: the gateway's, and Arrow (about 27 MB of RSS:
#: DuckDB reads the batches' numpy columns and writes the archive's Parquet itself).
NOT_LOADED = ("gateway", "strawberry", "pyarrow", "pandas")


def test_the_materializer_does_not_import_what_ingest_never_uses(tmp_path: Path) -> None:
    # Imported, then used: batches of every event type applied, every named query run,
    # an archive run written and read back.
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "import materializer.app, materializer.store, materializer.lifecycle, pulse_bi.cli\n"
        "from materializer import archive\n"
        "from bench.bench_apply import generate\n"
        "from materializer.queries import BadQuery\n"
        "from pulse_bi.contract import QUERIES\n"
        f"store = materializer.store.Store.open({str(tmp_path / 'm.duckdb')!r})\n"
        "messages = list(generate(3000, duplicates=0.01))\n"
        "for start in range(0, len(messages), 500):\n"
        "    store.apply_batch(messages[start : start + 500])\n"
        "assert store.last_sequence() == len(messages)\n"
        f"root = Path({str(tmp_path / 'archive')!r})\n"
        "archive.write_run(root, messages[:100], store.conn)\n"
        "assert [m.sequence for c in archive.messages(root) for m in c] == list(range(1, 101))\n"
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


def duckdb_memory(store: Store, *tags: str) -> int:
    """Bytes DuckDB holds under ``tags`` of ``duckdb_memory()`` (e.g. ``BASE_TABLE``: the
    file's cached blocks; ``IN_MEMORY_TABLE``: rows not checkpointed yet)."""
    row = store.read(
        lambda cur: cur.execute(
            "SELECT coalesce(sum(memory_usage_bytes), 0) FROM duckdb_memory()"
            " WHERE list_contains(?, tag)",
            [list(tags)],
        ).fetchone()
    )
    assert row is not None
    return int(row[0])


def _in_memory_rows(store: Store) -> int:
    return duckdb_memory(store, "IN_MEMORY_TABLE")


def _wal(path: Path) -> int:
    """Bytes in the WAL of ``path``; 0 when a checkpoint removed it (even between a look
    and a ``stat``)."""
    try:
        return path.with_name(path.name + ".wal").stat().st_size
    except FileNotFoundError:
        return 0


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


def test_the_default_threshold_limit_and_row_groups_are_the_settings_defaults() -> None:
    assert Settings.from_env({}).duckdb_checkpoint_threshold == db.CHECKPOINT_THRESHOLD
    assert Settings.from_env({}).duckdb_memory_limit == db.MEMORY_LIMIT
    assert Settings.from_env({}).duckdb_row_group_size == db.ROW_GROUP_SIZE
    assert Settings.from_env({"DUCKDB_CHECKPOINT_THRESHOLD": ""}).duckdb_checkpoint_threshold == ""


@pytest.mark.parametrize(
    ("setting", "threshold", "shown"),
    [
        ("", 16 * 2**20, "64.0 MiB"),  # empty: DuckDB's default
        ("1B", 1, "4 bytes"),
        ("16MB", 16_000_000, "61.0 MiB"),
        ("1.5GiB", 3 * 2**29, "6.0 GiB"),
        (f"{2**60}B", 2**60, "4096.0 PiB"),  # the largest size the setting takes
    ],
)
def test_duckdb_takes_four_times_any_threshold_the_setting_accepts_as_its_backstop(
    tmp_path: Path, setting: str, threshold: int, shown: str
) -> None:
    settings = Settings.from_env({"DUCKDB_CHECKPOINT_THRESHOLD": setting})
    assert settings.checkpoint_threshold_bytes == threshold
    store = Store.open(tmp_path / "pulse.duckdb")
    try:
        db.set_backstop_threshold(store.conn, settings.checkpoint_threshold_bytes)
        row = store.conn.execute(
            "SELECT value FROM duckdb_settings() WHERE name = 'checkpoint_threshold'"
        ).fetchone()
        store.apply_batch(list(generate(50)))  # and batches still commit under it
    finally:
        store.close()
    assert row is not None
    assert row[0] == shown  # four times the threshold, as DuckDB shows a size


def test_malloc_arena_cap_is_set_by_default_and_zero_leaves_glibc_alone() -> None:
    assert Settings.from_env({}).malloc_arena_max == 2
    assert limit_malloc_arenas(0) is False
    if sys.platform == "linux" and os.confstr("CS_GNU_LIBC_VERSION"):
        assert limit_malloc_arenas(2) is True


def _held_batches(payloads: frozenset[bytes]) -> tuple[int, int]:
    """Received messages of ``payloads`` still held in lists in this process, and results
    of committed batches (counts: holding the objects themselves would keep them alive).

    Garbage left by earlier tests is collected first, and only this test's messages are
    counted: a list of another test's, not yet collected, once failed this test in CI.
    """
    gc.collect()
    objects = gc.get_objects()
    messages = sum(
        len(o)
        for o in objects
        if type(o) is list and o and type(o[0]) is RawMessage and o[0].data in payloads
    )
    return messages, sum(1 for o in objects if type(o) is BatchResult)


async def test_no_batch_of_messages_is_held_once_it_is_committed_and_announced(
    materializer_settings: Settings, js: JetStreamContext
) -> None:
    # Held over an idle spell, the last batch pinned the allocator's memory its
    # messages sat in: ~7 MB of live blocks after a catch-up (docs/OPERATIONS.md, "Memory").
    # Its result too: the ids its changes name were decoded from its messages (letting
    # it go moved no allocator figure measured: docs/BENCHMARKS.md).
    messages = generate_stream(11, 400).messages
    payloads = frozenset(message.data for message in messages)
    async with Materializer(materializer_settings) as running:
        for rounds in range(2):  # a first catch-up, then a later batch
            last = 0
            for message in messages[rounds * 200 : (rounds + 1) * 200]:
                ack = await js.publish(message.subject, message.data, headers=message.headers)
                last = ack.seq
            await running.wait_for_sequence(last)
            for _ in range(100):  # the notice is out; the loop lets go of the batch next
                if _held_batches(payloads) == (0, 0):
                    break
                await asyncio.sleep(0.05)
            assert _held_batches(payloads) == (0, 0), f"messages, results held after round {rounds}"
        assert running.healthy() == (True, "ok")
