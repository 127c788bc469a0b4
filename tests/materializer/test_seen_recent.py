"""Seen event ids: 48-bit fingerprints find every id added; a re-delivered recent event
is dropped without scanning the raw tables; older ones, collisions and rejected ids
behave as before."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from materializer import store as store_module
from materializer.seen import EventFingerprints, RecentIds
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


@pytest.mark.parametrize("merge_at", [1, 7, 1 << 16])
def test_event_fingerprints_find_what_was_added_across_merges(
    monkeypatch: pytest.MonkeyPatch, merge_at: int
) -> None:
    monkeypatch.setattr(EventFingerprints, "MERGE_AT", merge_at)
    rng = np.random.default_rng(5)
    added = rng.integers(0, 2**64, 3000, dtype=np.uint64)
    # Crowd a few buckets: same top 16 bits, and pairs that differ only in the low 16.
    crowded = (np.uint64(0xABCD) << np.uint64(48)) | rng.integers(0, 2**40, 200, np.uint64)
    added = np.concatenate([added, crowded, crowded[:5] ^ np.uint64(1)])
    index = EventFingerprints(added[:1000])
    for start in range(1000, len(added), 97):
        index.add(added[start : start + 97])
    assert len(index) == len(added)
    assert index.find(added).all()
    assert index.find(added[::-1]).all()  # any order, repeated buckets
    absent = rng.integers(0, 2**64, 20000, dtype=np.uint64)
    fingerprints = {int(h) >> 16 for h in added}
    expected = np.array([int(h) >> 16 in fingerprints for h in absent])
    assert (index.find(absent) == expected).all()
    assert not expected.any()  # 48 bits: no chance collision among these
    # Same 48-bit fingerprint, other low 16 bits: a false hit (confirmed later) once
    # merged into the buckets; the delta still compares whole hashes.
    near = index.find(crowded[5:10] ^ np.uint64(2))
    assert near.all() if merge_at == 1 else not near.any() if merge_at > len(added) else True
    assert index.nbytes < len(added) * 4 + (1 << 16) * 8 + merge_at * 8 + 8


def test_event_fingerprints_empty_and_edge_values() -> None:
    index = EventFingerprints(np.empty(0, np.uint64))
    assert len(index) == 0
    assert not index.find(np.array([0, 2**64 - 1], np.uint64)).any()
    assert index.find(np.empty(0, np.uint64)).shape == (0,)
    extremes = np.array([0, 1, 2**64 - 1, 2**63], np.uint64)
    index.add(extremes)
    assert index.find(extremes).all()
    full = EventFingerprints(extremes)
    assert full.find(extremes).all()
    assert not full.find(np.array([2**48, 2**40], np.uint64)).any()
