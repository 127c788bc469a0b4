"""Recent event ids: a re-delivered recent event is dropped without scanning the raw
tables; older ones, collisions and rejected ids behave as before."""

from __future__ import annotations

from pathlib import Path

import pytest

from materializer import store as store_module
from materializer.seen import RecentIds
from materializer.store import Store
from tests.materializer.eventkit import DAY, Stream


def orders(store: Store) -> int:
    return int(store.query("sales_summary", DAY).wire["orders"])


def no_raw_scan(*_: object) -> set[str]:
    raise AssertionError("a recent duplicate was confirmed against the raw tables")


def test_a_recent_duplicate_is_confirmed_in_memory(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = Stream()
    store.apply_batch([stream.order("O-1", id="e1"), stream.move("A", "W", 5, id="m1")])
    monkeypatch.setattr(store_module, "confirm_seen", no_raw_scan)
    result = store.apply_batch([stream.move("A", "W", 5, id="m1"), stream.order("O-1", id="e1")])
    assert (result.applied, result.rejected, result.duplicates) == (0, 0, 2)
    assert store.query("stock_levels", {}).wire[0]["on_hand"] == 5
    assert orders(store) == 1


def test_an_old_duplicate_is_still_found_in_the_raw_tables(store: Store) -> None:
    stream = Stream()
    store._seen.recent = RecentIds(capacity=3)
    store.apply_batch([stream.order("O-1", id="e1")])
    for number in range(5):
        store.apply_batch([stream.move("A", "W", 1, id=f"m{number}")])
    assert "e1" not in store._seen.recent
    result = store.apply_batch([stream.order("O-1", id="e1")])
    assert (result.applied, result.duplicates) == (0, 1)
    assert orders(store) == 1


def test_after_a_restart_duplicates_are_found_in_the_raw_tables(tmp_path: Path) -> None:
    path = tmp_path / "pulse.duckdb"
    stream = Stream()
    store = Store.open(path)
    store.apply_batch([stream.order("O-1", id="e1")])
    store.close()
    store = Store.open(path)
    try:
        assert len(store._seen.recent) == 0
        result = store.apply_batch([stream.order("O-1", id="e1")])
        assert (result.applied, result.duplicates) == (0, 1)
    finally:
        store.close()


def test_a_rejected_id_is_not_recent_and_is_stored_again(store: Store) -> None:
    stream = Stream()
    store.apply_batch([stream.order("O-1", id="e1")])
    # Order id O-1 created again under another event id: rejected while applying.
    first = store.apply_batch([stream.order("O-1", id="e2")])
    assert (first.applied, first.rejected) == (0, 1)
    assert "e2" not in store._seen.recent and "e1" in store._seen.recent
    again = store.apply_batch([stream.order("O-1", id="e2")])
    assert (again.applied, again.rejected, again.duplicates) == (0, 1, 0)


def test_recent_ids_forget_whole_batches_oldest_first() -> None:
    recent = RecentIds(capacity=4)
    recent.add(["a", "b"])
    recent.add(["c", "d"])
    recent.add([])
    assert len(recent) == 4 and "a" in recent
    recent.add(["e"])
    assert "a" not in recent and "b" not in recent
    assert all(i in recent for i in "cde")
    recent.add([f"x{n}" for n in range(10)])  # larger than capacity: kept whole
    assert len(recent) == 10 and "e" not in recent and "x0" in recent
    assert 5 not in recent and "" not in recent
