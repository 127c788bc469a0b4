"""Plain statements run together with DuckDB's optimizer off; everything else with it on.

``materializer.aggregates.batch``: appends and one-row updates wait in the batch's
queue and run as a run, with ``enable_optimizer`` off on the store's connection when
two or more wait; reading ``Batch.cur`` runs the queue first and switches it on again.
Between batches it stays as the last run left it; ``Store.writer`` switches it on.
The queued statements below record the setting they ran under themselves
(``current_setting``), so each assertion reads what DuckDB did.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import pytest

from materializer import db
from materializer.aggregates.batch import Batch, Optimizer
from materializer.aggregates.columns import ints
from materializer.store import Store
from tests.materializer.eventkit import Stream
from tests.materializer.test_robustness import (
    _batch_with_an_overflowing_order,
    narrow_the_hourly_revenue,
)

_RECORD = (
    "INSERT INTO ran SELECT ?, (SELECT count(*) FROM rows), current_setting('enable_optimizer')"
)


def optimizer_on(conn: duckdb.DuckDBPyConnection) -> bool:
    (on,) = conn.execute("SELECT current_setting('enable_optimizer')").fetchall()[0]
    return bool(on)


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A store connection with a table of rows and one where statements record how they
    ran: their number, the rows they saw, whether the optimizer was on."""
    with db.connect(tmp_path / "optimizer.duckdb") as connection:
        connection.execute("CREATE TABLE rows (n BIGINT)")
        connection.execute("CREATE TABLE ran (step INTEGER, seen BIGINT, optimizer BOOLEAN)")
        yield connection


def test_a_run_of_plain_statements_runs_with_the_optimizer_off_and_in_order(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    batch = Batch(conn, Optimizer(conn))
    batch.plain(_RECORD, [1])
    batch.insert("rows", {"n": ints([10, 20, 30])})
    batch.plain(_RECORD, [2])
    assert conn.execute("SELECT count(*) FROM ran").fetchall() == [(0,)]  # still queued
    # Reading ``cur`` runs the queue first: the read sees every row queued before it.
    ran = batch.cur.execute("SELECT * FROM ran ORDER BY step").fetchall()
    assert ran == [(1, 0, False), (2, 3, False)]
    assert optimizer_on(conn)


def test_a_single_plain_statement_runs_without_a_switch(conn: duckdb.DuckDBPyConnection) -> None:
    batch = Batch(conn, Optimizer(conn))
    batch.insert("rows", {"n": ints([1])})
    assert batch.cur.execute("SELECT count(*) FROM rows").fetchall() == [(1,)]
    batch.plain(_RECORD, [1])
    batch.finish()
    assert conn.execute("SELECT * FROM ran").fetchall() == [(1, 1, True)]
    assert optimizer_on(conn)


def test_finish_runs_the_queue_and_leaves_the_optimizer_as_the_run_left_it(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    switch = Optimizer(conn)
    batch = Batch(conn, switch)
    for step in range(3):
        batch.plain(_RECORD, [step])
    batch.finish()
    assert conn.execute("SELECT optimizer FROM ran").fetchall() == [(False,)] * 3
    assert not optimizer_on(conn)  # no SET back: the next batch may start plain too
    batch.finish()  # nothing queued: nothing runs again
    assert conn.execute("SELECT count(*) FROM ran").fetchall() == [(3,)]
    # The next batch's run needs no SET, and what needs the optimizer switches it on.
    following = Batch(conn, switch)
    following.plain(_RECORD, [3])
    following.plain(_RECORD, [4])
    assert following.cur.execute("SELECT count(*) FROM ran").fetchall() == [(5,)]
    assert optimizer_on(conn)
    assert conn.execute("SELECT optimizer FROM ran WHERE step >= 3").fetchall() == [(False,)] * 2


def _switches(store: Store) -> list[str]:
    """Record each time the store's switch changes the optimizer from now on."""
    sets: list[str] = []
    switch = store._optimizer

    def recording(method: Callable[[], duckdb.DuckDBPyConnection]) -> Callable[[], object]:
        def switched() -> duckdb.DuckDBPyConnection:
            was_off = switch._off
            conn = method()
            if switch._off != was_off:
                sets.append("false" if switch._off else "true")
            return conn

        return switched

    switch.on = recording(switch.on)  # type: ignore[method-assign]
    switch.off = recording(switch.off)  # type: ignore[method-assign]
    return sets


def test_batches_of_plain_statements_switch_the_optimizer_off_once(tmp_path: Path) -> None:
    """Stock movements alone: every statement of each batch is plain. The first batch
    switches the optimizer off, and the ones after it find it off and switch nothing."""
    store = Store.open(tmp_path / "plain.duckdb")
    try:
        stream = Stream()
        sets = _switches(store)
        for batch in range(3):
            store.apply_batch([stream.move("SKU-1", "W", 1), stream.move(f"SKU-{batch}", "W", 2)])
        assert sets == ["false"]
        assert store.last_sequence() == 6
        assert not optimizer_on(store.conn)
    finally:
        store.close()


def test_what_runs_on_the_store_outside_a_batch_has_the_optimizer_on(tmp_path: Path) -> None:
    """``Store.writer`` (a rebuild, archiving, the stream's identity) switches it on; a
    read's cursor has it on whatever the writer's connection has."""
    store = Store.open(tmp_path / "outside.duckdb")
    try:
        stream = Stream()
        store.apply_batch([stream.move("SKU-1", "W", 1), stream.move("SKU-2", "W", 2)])
        assert not optimizer_on(store.conn)
        assert store.read(optimizer_on)
        assert not optimizer_on(store.conn)  # a read leaves the writer's setting alone
        assert optimizer_on(store.writer())
        # The switch knows: the next batch switches it off again, once.
        sets = _switches(store)
        store.apply_batch([stream.move("SKU-1", "W", 3), stream.move("SKU-3", "W", 4)])
        assert sets == ["false"]
    finally:
        store.close()


def test_without_an_optimizer_the_batch_leaves_the_setting_alone(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    batch = Batch(conn)
    batch.plain(_RECORD, [1])
    batch.plain(_RECORD, [2])
    batch.finish()
    assert conn.execute("SELECT optimizer FROM ran").fetchall() == [(True,), (True,)]


def test_a_query_cursor_keeps_the_optimizer_on_while_the_writer_has_it_off(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    switch = Optimizer(conn)
    switch.off()
    with db.cursor(conn) as reader:
        assert optimizer_on(reader)
    assert not optimizer_on(conn)
    switch.on()
    assert optimizer_on(conn)


def test_the_optimizer_is_on_after_batches_that_commit_and_batches_that_split(
    tmp_path: Path,
) -> None:
    store = Store.open(tmp_path / "split.duckdb")
    try:
        narrow_the_hourly_revenue(store.conn)
        # An order the delta cannot take fails in a run of plain statements; the
        # halves of the split commit.
        result = store.apply_batch(_batch_with_an_overflowing_order(Stream()))
        assert (result.applied, result.rejected) == (6, 1)
        assert optimizer_on(store.conn) == (not store._optimizer._off)
        result = store.apply_batch([Stream(start=8).move("SKU-2", "W", 1, id="after")])
        assert (result.applied, result.last_sequence) == (1, 8)
        assert optimizer_on(store.conn) == (not store._optimizer._off)
        assert optimizer_on(store.writer())
    finally:
        store.close()


def test_the_optimizer_is_on_again_after_an_infrastructure_fault_in_a_run(
    tmp_path: Path,
) -> None:
    """A fault raised unchanged (no split, no commit after it) still leaves the store's
    connection with the optimizer on: a SET outlives the ROLLBACK."""
    store = Store.open(tmp_path / "fault.duckdb")
    try:
        stream = Stream()
        store.apply_batch([stream.order("O-1")])
        # The table the run appends new keys to is gone: a fault of the file's state.
        store.conn.execute("ALTER TABLE raw_staged RENAME TO raw_staged_away")
        messages = [stream.order("O-2"), stream.move("SKU-1", "W", 1)]
        with pytest.raises(duckdb.CatalogException):
            store.apply_batch(messages)
        assert optimizer_on(store.conn)
        assert store.last_sequence() == 1
        store.conn.execute("ALTER TABLE raw_staged_away RENAME TO raw_staged")
        result = store.apply_batch(messages)
        assert (result.applied, result.rejected, store.last_sequence()) == (2, 0, 3)
    finally:
        store.close()
