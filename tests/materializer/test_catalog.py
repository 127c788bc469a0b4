"""Catalog: every product and customer holds its last update in stream order, whether a
batch updates one key (a plain UPDATE, or an INSERT when the key is new) or several (a
DELETE of their rows and an INSERT of each key's last update), and however the updates
fall into batches."""

from __future__ import annotations

import itertools
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from materializer.store import Store
from tests.materializer.eventkit import Stream

_UPDATES = st.lists(
    st.tuples(st.sampled_from(["SKU-1", "SKU-2", "sku-ü"]), st.integers(0, 10**9)),
    min_size=1,
    max_size=12,
)


def _products(store: Store) -> dict[str, tuple[str, int, Decimal, int]]:
    rows = store.conn.execute(
        "SELECT sku, name, reorder_point, unit_cost, sequence FROM products"
    ).fetchall()
    return {sku: (name, point, cost, sequence) for sku, name, point, cost, sequence in rows}


@settings(max_examples=40, deadline=None)
@given(updates=_UPDATES, cuts=st.lists(st.integers(1, 12), max_size=4))
def test_each_product_holds_its_last_update_however_batched(
    tmp_path_factory: pytest.TempPathFactory, updates: list[tuple[str, int]], cuts: list[int]
) -> None:
    stream = Stream()
    messages = [
        stream.product(sku, name=f"v{point}", reorder_point=point, unit_cost=f"{point % 997}.05")
        for sku, point in updates
    ]
    store = Store.open(tmp_path_factory.mktemp("catalog") / "c.duckdb")
    try:
        bounds = sorted({0, len(messages), *(c for c in cuts if c < len(messages))})
        for start, end in itertools.pairwise(bounds):
            store.apply_batch(messages[start:end])
        expected = {
            sku: (f"v{point}", point, Decimal(f"{point % 997}.05"), message.sequence)
            for (sku, point), message in zip(updates, messages, strict=True)
        }
        assert _products(store) == expected
        (events,) = store.conn.execute("SELECT count(*) FROM product_events").fetchone() or (0,)
        assert events == len(messages)
    finally:
        store.close()


def test_a_customer_is_inserted_then_updated_then_renamed_twice_in_one_batch(
    tmp_path: Path,
) -> None:
    stream = Stream()
    store = Store.open(tmp_path / "c.duckdb")
    try:
        store.apply_batch([stream.customer("C-1", "Ada")])  # new: the plain INSERT
        store.apply_batch([stream.customer("C-1", "Ada L.")])  # known: the plain UPDATE
        first = stream.customer("C-1", "Ada K.")
        last = stream.customer("C-1", "Ada Lovelace")
        store.apply_batch([first, last])  # one key, twice: the last wins
        bob, cy = stream.customer("C-2", "Bob"), stream.customer("C-3", "Cy")
        store.apply_batch([bob, cy])  # two keys: the upsert
        rows = store.conn.execute(
            "SELECT customer_id, name, sequence FROM customers ORDER BY customer_id"
        ).fetchall()
    finally:
        store.close()
    assert rows == [
        ("C-1", "Ada Lovelace", last.sequence),
        ("C-2", "Bob", bob.sequence),
        ("C-3", "Cy", cy.sequence),
    ]


@pytest.mark.parametrize("alone", [True, False], ids=["one key: UPDATE/INSERT", "two: upsert"])
def test_a_product_at_the_contracts_limits_is_stored_exactly(tmp_path: Path, alone: bool) -> None:
    """The largest money, quantity and name, a time at the end of the contract's window:
    the same row whichever statement stores it."""
    stream = Stream()
    name = "ü" * 4096
    known = stream.product("SKU-ü", unit_cost="9999999999999999.99")
    extreme = stream.product(
        "SKU-ü",
        name=name,
        reorder_point=1_000_000_000,
        unit_cost="-9999999999999999.99",
        time="2199-12-30T23:59:59.999999Z",
    )
    batch = [extreme] if alone else [extreme, stream.product("SKU-2")]
    store = Store.open(tmp_path / "c.duckdb")
    try:
        store.apply_batch([known])
        store.apply_batch(batch)
        row = store.conn.execute(
            "SELECT name, reorder_point, unit_cost, sequence, updated_at FROM products"
            " WHERE sku = 'SKU-ü'"
        ).fetchone()
    finally:
        store.close()
    assert row is not None
    assert row[:4] == (name, 1_000_000_000, Decimal("-9999999999999999.99"), extreme.sequence)
    assert row[4] == datetime(2199, 12, 30, 23, 59, 59, 999999, tzinfo=UTC)


_KILLED_WRITER = """
import os, sys
from materializer.store import Store
from tests.materializer.eventkit import Stream
s = Stream()
store = Store.open(sys.argv[1])
store.apply_batch([s.product(f"SKU-{i}", name=f"v1-{i}") for i in range(5)])
store.checkpoint(force=True)
store.apply_batch([s.product(f"SKU-{i}", name=f"v2-{i}") for i in range(5)])
store.apply_batch([s.product(f"SKU-{i}", name=f"v3-{i}") for i in (1, 3, 9)])
store.apply_batch([s.customer(f"C-{i}", f"c{i}") for i in range(3)] + [s.customer("C-1", "c")])
store.apply_batch([s.customer(f"C-{i}", f"d{i}") for i in range(3)])
os._exit(0)  # no checkpoint and no close: the WAL holds every batch after the first
"""


def test_replacing_several_keys_survives_a_kill_before_the_checkpoint(tmp_path: Path) -> None:
    """A batch's DELETE and INSERT of the same primary keys are replayed from the WAL
    after a kill: the file opens and each key holds its last update."""
    path = tmp_path / "killed.duckdb"
    subprocess.run(
        [sys.executable, "-c", _KILLED_WRITER, str(path)],
        check=True,
        cwd=Path(__file__).parents[2],
        timeout=120,
    )
    assert (tmp_path / "killed.duckdb.wal").stat().st_size > 0
    store = Store.open(path)
    try:
        names = dict(store.conn.execute("SELECT sku, name FROM products").fetchall())
        customers = dict(store.conn.execute("SELECT customer_id, name FROM customers").fetchall())
    finally:
        store.close()
    assert names == {
        "SKU-0": "v2-0",
        "SKU-1": "v3-1",
        "SKU-2": "v2-2",
        "SKU-3": "v3-3",
        "SKU-4": "v2-4",
        "SKU-9": "v3-9",
    }
    assert customers == {"C-0": "d0", "C-1": "d1", "C-2": "d2"}
