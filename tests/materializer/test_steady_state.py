"""A live materializer under steady traffic and concurrent reads keeps its files small.

The defect this guards against (docs/OPERATIONS.md, "Checkpoints"): a read that leaves a
transaction open makes DuckDB keep every later commit's old versions, spill them to the
``.tmp`` folder and refuse to checkpoint, so the WAL only grows and batches slow down.
And a query merely running when a checkpoint is due makes DuckDB refuse that checkpoint,
which must be tried again, never stop ingest.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import duckdb
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from bench.bench_apply import generate as generate_raw
from materializer import consumer, db, memory
from materializer.aggregates import FOLDED, deltas, staged
from materializer.app import Materializer
from materializer.consumer import IDLE_SECONDS
from materializer.settings import Settings
from materializer.store import Store
from pulse_bi.contract import QUERY_NAMES
from pulse_bi.simulator import generate
from tests.materializer.eventkit import DAY, Stream, publish
from tests.materializer.test_memory import duckdb_memory
from tests.materializer.test_queries import PARAMS
from tests.materializer.test_runtime import ask

#: Seconds of steady traffic, and the checkpoint interval within it.
TRAFFIC_SECONDS = 4.0
CHECKPOINT_INTERVAL = 0.3


def _size(path: Path) -> int:
    """Bytes in ``path``; 0 when it is not there (a checkpoint may remove the WAL at any
    moment, even between a look and a ``stat``)."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _temp_files(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


async def test_steady_traffic_with_concurrent_queries_checkpoints_on_schedule_and_spills_nothing(
    materializer_settings: Settings, js: JetStreamContext, nc: NATS
) -> None:
    settings = dataclasses.replace(materializer_settings, checkpoint_interval=CHECKPOINT_INTERVAL)
    path = settings.duckdb_path
    wal = path.with_name(path.name + ".wal")
    temp = path.with_name(path.name + ".tmp")
    # Every event type, with duplicates and bad input, published at a steady pace.
    messages = generate(5, 600, duplicates=0.01, bad=0.01).messages
    loop = asyncio.get_running_loop()
    async with Materializer(settings) as running:
        file_at_start = _size(path)
        stopping = asyncio.Event()
        answered = 0

        async def dashboard() -> None:
            """Every named query in turn, as a dashboard refreshing would send them."""
            nonlocal answered
            while not stopping.is_set():
                for name in QUERY_NAMES:
                    await ask(nc, name, **PARAMS.get(name, {}))
                    answered += 1

        readers = [asyncio.create_task(dashboard()) for _ in range(2)]
        wal_sizes: list[int] = []
        spilled: list[str] = []
        began = loop.time()
        last = 0
        for index, message in enumerate(messages):
            delay = began + index * TRAFFIC_SECONDS / len(messages) - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            ack = await js.publish(message.subject, message.data, headers=message.headers)
            last = max(last, ack.seq)
            if index % 10 == 0:
                wal_sizes.append(_size(wal))
                spilled += _temp_files(temp)
        await running.wait_for_sequence(last, timeout=30)
        stopping.set()
        await asyncio.gather(*readers)
        checkpoints = running.metrics.registry.get_sample_value(
            "pulse_materializer_checkpoint_seconds_count"
        )
        assert running.healthy() == (True, "ok")
        file_at_end = _size(path)

    assert answered >= len(QUERY_NAMES)
    # ~13 are due in 4 s; a slow machine may apply fewer batches, not none.
    assert checkpoints is not None and checkpoints >= 3
    # Each checkpoint writes the WAL into the file and starts it afresh.
    assert any(later < earlier for earlier, later in itertools.pairwise(wal_sizes))
    assert file_at_end > file_at_start
    assert spilled == []


async def test_the_wal_is_checkpointed_once_it_reaches_the_threshold_and_duckdb_only_backs_it_up(
    materializer_settings: Settings, js: JetStreamContext
) -> None:
    """No interval due: the WAL's size alone brings the checkpoints, run by the
    materializer; DuckDB's own threshold is four times higher (a backstop). DuckDB
    checkpoints when the WAL plus its estimate of the commit's WAL size would pass it,
    and it estimates a small batch at several hundred KB or more: at 256 KB it would do
    every checkpoint itself."""
    settings = dataclasses.replace(
        materializer_settings,
        checkpoint_interval=0.0,
        duckdb_checkpoint_threshold="256KB",
        duckdb_row_group_size=4096,
    )
    wal = settings.duckdb_path.with_name(settings.duckdb_path.name + ".wal")
    # ~16 KB of WAL per 50 events: about four thresholds in all.
    messages = generate(7, 3000, duplicates=0.0, bad=0.0).messages
    async with Materializer(settings) as running:
        assert running.store is not None
        with running.store.conn.cursor() as cur:
            duckdb_threshold = cur.execute(
                "SELECT current_setting('checkpoint_threshold')"
            ).fetchone()
            attached = cur.execute(
                f"SELECT options FROM duckdb_databases() WHERE database_name = '{db.CATALOG}'"
            ).fetchall()
        assert attached == [({"row_group_size": "4096"},)]  # DUCKDB_ROW_GROUP_SIZE
        wal_sizes: list[int] = []
        last = 0
        for start in range(0, len(messages), 50):
            for message in messages[start : start + 50]:
                ack = await js.publish(message.subject, message.data, headers=message.headers)
                last = ack.seq
            await running.wait_for_sequence(last, timeout=30)
            wal_sizes.append(_size(wal))
        checkpoints = running.metrics.registry.get_sample_value(
            "pulse_materializer_checkpoint_seconds_count"
        )
    assert duckdb_threshold == ("1000.0 KiB",)  # 4 x 256,000 bytes
    assert checkpoints is not None and checkpoints >= 2
    assert any(later < earlier for earlier, later in itertools.pairwise(wal_sizes))
    # Checked after every batch: never far past the threshold.
    assert max(wal_sizes) < 2 * 256_000


@contextlib.contextmanager
def _slow_read(store: Store) -> Iterator[tuple[Future[Any], duckdb.DuckDBPyConnection]]:
    """A read of the store running on a worker thread, and its cursor: long enough to
    still run when the checkpoints in the block start, interrupted at the latest when the
    block ends."""
    running = threading.Event()
    cursors: list[duckdb.DuckDBPyConnection] = []

    def slow_read(cursor: duckdb.DuckDBPyConnection) -> Any:
        cursors.append(cursor)
        running.set()
        return cursor.execute("SELECT count(*) FROM range(100000000000)").fetchall()

    with ThreadPoolExecutor(max_workers=1) as worker:
        read = worker.submit(store.read, slow_read)
        assert running.wait(10)
        time.sleep(0.1)  # the query is executing, not just submitted
        try:
            yield read, cursors[0]
        finally:
            if not read.done():  # the block failed before interrupting it
                with contextlib.suppress(duckdb.ConnectionException):
                    cursors[0].interrupt()


def test_a_running_read_defers_a_plain_checkpoint_and_a_forced_one_waits_for_it(
    tmp_path: Path,
) -> None:
    """DuckDB refuses CHECKPOINT while a query runs and the WAL holds an update or a
    delete (a fold's, here); FORCE CHECKPOINT waits for it."""
    store = Store.open(tmp_path / "pulse.duckdb")
    stream = Stream()
    store.apply_batch([stream.move("SKU-1", "W1", 1)])
    try:
        with _slow_read(store) as (read, cursor):
            store.apply_batch([stream.move("SKU-1", "W1", 1)])
            store.compact()  # deletes the rows it folds

            assert store.checkpoint() is False

            threading.Timer(0.5, cursor.interrupt).start()
            started = time.perf_counter()
            assert store.checkpoint(force=True) is True
            waited = time.perf_counter() - started
            with pytest.raises(duckdb.InterruptException):
                read.result()
        assert waited >= 0.3  # it waited for the read, not refused it
        assert store.checkpoint() is True  # nothing running now
    finally:
        store.close()


def test_a_checkpoint_after_batches_that_only_append_runs_beside_a_read(
    tmp_path: Path,
) -> None:
    """Batches of orders and stock movements only append (raw rows, deltas and the
    pipeline state's row, m0016): DuckDB checkpoints them while a read runs."""
    store = Store.open(tmp_path / "pulse.duckdb")
    stream = Stream()
    store.apply_batch([stream.order("O-1"), stream.move("SKU-1", "W1", 1)])
    assert store.checkpoint() is True
    try:
        with _slow_read(store) as (read, cursor):
            for number in range(2, 5):
                store.apply_batch([stream.order(f"O-{number}"), stream.move("SKU-1", "W1", 1)])
                assert store.checkpoint() is True
            cursor.interrupt()
            with pytest.raises(duckdb.InterruptException):
                read.result()
        assert store.query("sales_summary", DAY).wire["orders"] == 4
    finally:
        store.close()


def test_tables_grow_in_row_groups_of_the_configured_size_across_reopens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each checkpoint rewrites the partly filled last row group of every table that grew,
    so the file is always attached with ``db.ROW_GROUP_SIZE``: DuckDB does not store it
    in the file, and a connection at its default merges the groups back to 122,880 rows
    at the next checkpoint (docs/OPERATIONS.md, "Checkpoints")."""
    monkeypatch.setattr(db, "ROW_GROUP_SIZE", 2048)  # DuckDB: a multiple of 2,048
    # Every batch writes the bases (none staged), so the seen ids' base grows each time.
    monkeypatch.setattr(staged, "MAX_ROWS", 0)
    path = tmp_path / "pulse.duckdb"
    stream = Stream()
    messages = [stream.raw(m.data, m.subject) for m in generate(3, 16_000, duplicates=0.0).messages]

    def groups() -> list[int]:
        return [
            n
            for (n,) in store.read(
                lambda cur: cur.execute(
                    "SELECT max(count) FROM pragma_storage_info('seen_events_base')"
                    " GROUP BY row_group_id"
                ).fetchall()
            )
        ]

    for part in (messages[:8000], messages[8000:]):  # closed and opened again between
        store = Store.open(path)
        try:
            for start in range(0, len(part), 500):
                store.apply_batch(part[start : start + 500])
                assert store.checkpoint()
            sizes = groups()
            spill = store.read(
                lambda cur: cur.execute("SELECT current_setting('temp_directory')").fetchall()
            )
        finally:
            store.close()
        assert max(sizes) <= 2048
        assert spill == [(f"{path}.tmp",)]  # where DuckDB spills for a file it opens itself
    assert len(sizes) >= 3 and sum(sizes) > 2 * 2048  # several groups, not one large one


@pytest.mark.parametrize("rows", [2048, 16_384, 122_880, 1_048_576])
def test_every_row_group_size_the_setting_accepts_opens_the_file(tmp_path: Path, rows: int) -> None:
    """The ends and the defaults of ``DUCKDB_ROW_GROUP_SIZE`` are sizes DuckDB takes."""
    assert Settings.from_env({"DUCKDB_ROW_GROUP_SIZE": str(rows)}).duckdb_row_group_size == rows
    store = Store.open(tmp_path / "pulse.duckdb", row_group_size=rows)
    try:
        store.apply_batch([Stream().move("SKU-1", "W1", 1)])
        assert store.checkpoint()
        attached = store.read(
            lambda cur: cur.execute(
                "SELECT options FROM duckdb_databases() WHERE database_name = current_database()"
            ).fetchall()
        )
    finally:
        store.close()
    assert attached == [({"row_group_size": str(rows)},)]


@pytest.mark.parametrize("name", ["it's here", "ünï côdé 数据", "a;DETACH pulse;--", "space d"])
def test_the_file_is_attached_whatever_its_path_holds(tmp_path: Path, name: str) -> None:
    """``db.connect`` names the file inside ATTACH's SQL string: quotes, unicode and SQL
    in its path open that very file, spill beside it, and survive a reopen."""
    path = tmp_path / name / "pulse.duckdb"
    path.parent.mkdir()
    for _ in range(2):
        store = Store.open(path)
        try:
            store.apply_batch([Stream().move("SKU-1", "W1", 1)])
            where = store.read(
                lambda cur: cur.execute(
                    "SELECT path, current_setting('temp_directory') FROM duckdb_databases()"
                    " WHERE database_name = current_database()"
                ).fetchall()
            )
        finally:
            store.close()
        assert where == [(str(path), f"{path}.tmp")]
    assert sorted(p.name for p in path.parent.iterdir()) == ["pulse.duckdb"]


def _sample(running: Materializer, name: str) -> float:
    """One sample of the materializer's metrics (0 before its first observation)."""
    return running.metrics.registry.get_sample_value(f"pulse_materializer_{name}") or 0.0


def _checkpoints(running: Materializer) -> float:
    return _sample(running, "checkpoint_seconds_count")


async def _until(predicate: Any, seconds: float) -> bool:
    for _ in range(int(seconds / 0.1)):
        if predicate():
            return True
        await asyncio.sleep(0.1)
    return bool(predicate())


async def test_an_idle_materializer_checkpoints_a_wal_a_quarter_full_and_not_a_smaller_one(
    materializer_settings: Settings, js: JetStreamContext
) -> None:
    """After a catch-up or a burst, the rows committed since the last checkpoint must
    not wait in memory and in the WAL for a batch that may not come for hours."""
    settings = dataclasses.replace(
        materializer_settings, checkpoint_interval=0.0, duckdb_checkpoint_threshold="1MB"
    )
    wal = settings.duckdb_path.with_name(settings.duckdb_path.name + ".wal")
    messages = generate(9, 6000, duplicates=0.0, bad=0.0).messages
    async with Materializer(settings) as running:
        await running.wait_for_sequence(await publish(js, messages[:5]))
        small = _size(wal)
        await asyncio.sleep(3 * IDLE_SECONDS)
        assert 0 < small < 250_000
        assert (_size(wal), _checkpoints(running)) == (small, 0)
        published = 5
        while _size(wal) < 250_000 and published < len(messages):
            last = await publish(js, messages[published : published + 100])
            await running.wait_for_sequence(last)
            published += 100
        assert 250_000 <= _size(wal) < 1_000_000  # a quarter of the threshold, not all
        before = _checkpoints(running)
        # Both: the WAL empties in the writer thread a moment before the event loop
        # counts the checkpoint.
        assert await _until(
            lambda: _size(wal) == 0 and _checkpoints(running) > before, 10 * IDLE_SECONDS
        )
        assert _checkpoints(running) == before + 1
        assert running.healthy() == (True, "ok")


async def test_an_idle_materializer_checkpoints_any_wal_once_the_interval_is_past(
    materializer_settings: Settings, js: JetStreamContext
) -> None:
    settings = dataclasses.replace(materializer_settings, checkpoint_interval=2.0)
    wal = settings.duckdb_path.with_name(settings.duckdb_path.name + ".wal")
    messages = generate(4, 15, duplicates=0.0, bad=0.0).messages
    async with Materializer(settings) as running:
        for start in range(0, len(messages), 5):
            await running.wait_for_sequence(await publish(js, messages[start : start + 5]))
            if _size(wal):  # else a slow start let the interval pass: the batch checkpointed
                break
        assert 0 < _size(wal) < 250_000
        assert await _until(
            lambda: _size(wal) == 0 and _checkpoints(running) >= 1,
            4 * settings.checkpoint_interval,
        )
        # Nothing committed since: no more checkpoints however long it stays idle.
        done = _checkpoints(running)
        await asyncio.sleep(settings.checkpoint_interval + 2 * IDLE_SECONDS)
        assert _checkpoints(running) == done


def _memory_limit(store: Store) -> str:
    return str(
        store.read(lambda cur: cur.execute("SELECT current_setting('memory_limit')").fetchall())
    )


def test_releasing_memory_drops_cached_blocks_and_keeps_the_limit_and_every_answer(
    tmp_path: Path,
) -> None:
    path = tmp_path / "pulse.duckdb"
    store = Store.open(path, memory_limit="64MB")
    try:
        messages = list(generate_raw(40_000, duplicates=0.01))
        for start in range(0, len(messages), 10_000):
            store.apply_batch(messages[start : start + 10_000])
        assert store.checkpoint() is True  # what is left to drop is the cache of the file
        answers = {name: store.query(name, PARAMS.get(name, {})).data for name in QUERY_NAMES}
        before, limit = duckdb_memory(store, "BASE_TABLE", "IN_MEMORY_TABLE"), _memory_limit(store)

        assert store.release_memory() is True

        after = duckdb_memory(store, "BASE_TABLE", "IN_MEMORY_TABLE")
        assert after < before / 2, (before, after)
        assert _size(path.with_name(path.name + ".wal")) == 0  # checkpointed, not spilled
        assert _temp_files(path.with_name(path.name + ".tmp")) == []
        assert _memory_limit(store) == limit
        assert memory.release_free_pages() == 2  # DuckDB's jemalloc and glibc, on Linux
        again = {name: store.query(name, PARAMS.get(name, {})).data for name in QUERY_NAMES}
        assert again == answers
    finally:
        store.close()


def test_memory_is_not_released_under_a_running_read_and_reads_wait_for_a_release(
    tmp_path: Path,
) -> None:
    store = Store.open(tmp_path / "pulse.duckdb", memory_limit="64MB")
    store.apply_batch(list(generate_raw(2_000)))
    running, finish = threading.Event(), threading.Event()

    def slow_read(cursor: duckdb.DuckDBPyConnection) -> Any:
        running.set()
        assert finish.wait(10)
        return cursor.execute("SELECT count(*) FROM stock_events").fetchall()

    try:
        with ThreadPoolExecutor(max_workers=2) as workers:
            read = workers.submit(store.read, slow_read)
            assert running.wait(10)
            # A lower memory limit could fail the read: nothing is done, to be tried again.
            assert store.release_memory() is False
            finish.set()
            assert read.result(10)[0][0] > 0
            assert store.release_memory() is True

            # A read that starts during a release waits for it to end (the release's
            # two SET statements stretched here by holding its flag).
            with store._reads_changed:
                store._releasing = True
            late = workers.submit(store.read, lambda cur: cur.execute("SELECT 1").fetchall())
            time.sleep(0.2)
            assert not late.done()
            with store._reads_changed:
                store._releasing = False
                store._reads_changed.notify_all()
            assert late.result(10) == [(1,)]
    finally:
        store.close()


def _releases(running: Materializer) -> float:
    return _sample(running, "memory_releases_total")


async def test_memory_is_handed_back_once_ingest_goes_idle_after_a_burst_and_not_after_a_trickle(
    materializer_settings: Settings, js: JetStreamContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(consumer, "RELEASE_AFTER_EVENTS", 300)
    messages = generate(12, 420, duplicates=0.0, bad=0.0).messages
    async with Materializer(materializer_settings) as running:
        await running.wait_for_sequence(await publish(js, messages[:400]))  # a burst
        assert await _until(lambda: _releases(running) == 1, 10 * IDLE_SECONDS)
        await asyncio.sleep(3 * IDLE_SECONDS)
        assert _releases(running) == 1  # idle on: nothing new to hand back
        for start in range(400, 420, 5):  # a trickle, short of another burst
            await running.wait_for_sequence(await publish(js, messages[start : start + 5]))
            await asyncio.sleep(1.5 * IDLE_SECONDS)
        assert _releases(running) == 1
        assert running.healthy() == (True, "ok")
        answered = await asyncio.to_thread(running.store.query, "pipeline", {})  # type: ignore[union-attr]
        assert answered.data is not None


def _folds(running: Materializer) -> float:
    return _sample(running, "fold_seconds_count")


async def test_the_deltas_are_folded_after_the_notice_of_the_batch_that_filled_them(
    materializer_settings: Settings, js: JetStreamContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not before the next batch, which may not come for hours, and which would wait for
    the fold: a batch's deltas are folded as soon as its notice is out."""
    monkeypatch.setattr(deltas, "COMPACT_ROWS", 1)  # every batch with a delta row is due
    messages = generate(13, 600, duplicates=0.0, bad=0.0).messages
    last_order = max(i for i, m in enumerate(messages) if m.subject.endswith("orders.created"))
    async with Materializer(materializer_settings) as running:
        store = running.store
        assert store is not None

        def pending() -> int:
            return store.read(lambda cursor: deltas.pending_rows(cursor, FOLDED))

        await running.wait_for_sequence(await publish(js, messages[:last_order]))
        folds = _folds(running)
        # One order alone: its batch appends delta rows, and no batch comes after it.
        await running.wait_for_sequence(await publish(js, [messages[last_order]]))
        assert await _until(lambda: _folds(running) > folds and pending() == 0, 5)
        # Every order is still counted, from the bases alone now.
        count, first, last = await asyncio.to_thread(
            store.read,
            lambda cursor: cursor.execute(
                "SELECT count(*), date_trunc('hour', min(time)), max(time) + INTERVAL 1 HOUR"
                " FROM order_events"
            ).fetchone(),
        )
        window = {"from": first.isoformat(), "to": last.isoformat()}
        answered = await asyncio.to_thread(store.query, "sales_summary", window)
        assert answered.wire["orders"] == count > 0
        assert running.healthy() == (True, "ok")


async def test_a_fold_that_fails_after_the_notice_is_left_to_the_next_batch(
    materializer_settings: Settings, js: JetStreamContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its batch is committed and announced already: ingest goes on, and the next batch
    folds first."""
    monkeypatch.setattr(deltas, "COMPACT_ROWS", 1)
    fold = Store.compact
    failures: list[int] = []

    def fails_once(store: Store, **which: bool) -> None:
        if not failures:
            failures.append(store.last_sequence())
            raise duckdb.IOException("IO Error: could not write to the WAL (injected)")
        fold(store, **which)

    monkeypatch.setattr(Store, "compact", fails_once)
    messages = generate(14, 200, duplicates=0.0, bad=0.0).messages
    orders = [i for i, m in enumerate(messages) if m.subject.endswith("orders.created")]
    async with Materializer(materializer_settings) as running:
        store = running.store
        assert store is not None
        first = await publish(js, messages[: orders[0] + 1])
        await running.wait_for_sequence(first)
        assert await _until(lambda: bool(failures), 5)
        assert len(failures) == 1 and failures[0] <= first  # after a committed batch
        last = await publish(js, messages[orders[0] + 1 : orders[-1] + 1])
        await running.wait_for_sequence(last)
        assert await _until(
            lambda: (
                _folds(running) >= 1
                and store.read(lambda cursor: deltas.pending_rows(cursor, FOLDED)) == 0
            ),
            5,
        )
        assert running.healthy() == (True, "ok")


async def test_between_folds_the_writer_thread_is_handed_the_batches_alone(
    materializer_settings: Settings, js: JetStreamContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whether a fold is due is a counter the loop reads: asking the writer thread after
    every batch was a round trip in front of the next batch (docs/OPERATIONS.md,
    "Aggregate deltas")."""
    monkeypatch.setattr(deltas, "COMPACT_ROWS", 10**9)
    messages = generate(15, 300, duplicates=0.0, bad=0.0).messages
    async with Materializer(materializer_settings) as running:
        ingestor = running.ingestor
        assert ingestor is not None
        handed: list[str] = []
        submit = ingestor._writer.submit

        def counted(fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            handed.append(getattr(fn, "__name__", repr(fn)))
            return submit(fn, *args, **kwargs)

        monkeypatch.setattr(ingestor._writer, "submit", counted)
        for start in range(0, 300, 30):
            await running.wait_for_sequence(await publish(js, messages[start : start + 30]))
        assert handed.count("apply_batch") >= 10
        assert "fold_when_due" not in handed
        assert running.healthy() == (True, "ok")


async def test_a_batch_waits_only_when_messages_were_waiting_for_the_writer(
    materializer_settings: Settings, js: JetStreamContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``BATCH_MAX_WAIT_MS`` pauses a writer that comes free with messages already
    waiting (sustained load: the reads the last notice set off run alone, and the batch
    fills), never one that is idle when a message arrives: a trickle pays no wait
    (docs/OPERATIONS.md, "Batches")."""
    wait = 1.0  # the most BATCH_MAX_WAIT_MS allows
    settings = dataclasses.replace(materializer_settings, batch_max_wait_ms=int(wait * 1000))
    messages = generate(16, 40, duplicates=0.0, bad=0.0).messages
    apply = Store.apply_batch
    started: list[float] = []
    ended: list[float] = []
    gate = threading.Event()
    gate.set()

    def timed(store: Store, batch: Any) -> Any:
        started.append(time.monotonic())
        try:
            gate.wait(30)
            return apply(store, batch)
        finally:
            ended.append(time.monotonic())

    monkeypatch.setattr(Store, "apply_batch", timed)
    async with Materializer(settings) as running:
        ingestor = running.ingestor
        assert ingestor is not None
        # Idle: the message is taken at once, not after the wait.
        published = time.monotonic()
        await running.wait_for_sequence(await publish(js, messages[:1]), timeout=30)
        assert len(started) == 1
        assert started[0] - published < wait
        # Behind: a message arrives while the writer holds a batch.
        gate.clear()
        await publish(js, messages[1:2])
        assert await _until(lambda: len(started) == 2, 10)
        last = await publish(js, messages[2:3])
        assert await _until(lambda: bool(ingestor._buffer), 10)
        gate.set()
        await running.wait_for_sequence(last, timeout=30)
        assert len(started) == 3
        assert started[2] - ended[1] >= wait
        assert running.healthy() == (True, "ok")
