"""Seen event ids: 48-bit fingerprints find every id added; a re-delivered recent event
is dropped without scanning the raw tables; older ones, collisions and rejected ids
behave as before. Seen keys: 80-bit fingerprints find every key added with its
sequence, and nothing else."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from materializer import store as store_module
from materializer.aggregates.batch import md5_halves
from materializer.seen import EventFingerprints, KeyFingerprints, RecentIds
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


def digests(*ids: str) -> np.ndarray:
    return md5_halves(ids)


def test_recent_ids_forget_the_oldest_first() -> None:
    recent = RecentIds(capacity=4)
    recent.add(digests("a", "b"))
    recent.add(digests("c", "d"))
    recent.add(digests())
    assert len(recent) == 4 and "a" in recent
    recent.add(digests("e"))
    assert "a" not in recent and "b" in recent
    assert all(i in recent for i in "bcde")
    recent.add(digests(*(f"x{n}" for n in range(10))))  # more than capacity: the last 4
    assert len(recent) == 4 and "e" not in recent and "x5" not in recent
    assert all(f"x{n}" in recent for n in range(6, 10))
    assert 5 not in recent and "" not in recent


def test_recent_ids_compare_all_16_bytes() -> None:
    recent = RecentIds(capacity=8)
    held = digests("a", "b")
    recent.add(held)
    # Same md5_number_lower as "a", other low word: not the same id.
    twin = held[:1].copy()
    twin[0, 0] ^= np.uint64(1)
    assert recent.find(twin).tolist() == [False]
    assert recent.find(np.concatenate([twin, held])).tolist() == [False, True, True]
    assert recent.find(np.empty((0, 2), np.uint64)).tolist() == []


@settings(max_examples=60, deadline=None)
@given(
    capacity=st.integers(1, 12),
    batches=st.lists(st.lists(st.text(max_size=6), max_size=15), max_size=12),
)
def test_recent_ids_hold_exactly_the_last_ids_added(
    capacity: int, batches: list[list[str]]
) -> None:
    recent = RecentIds(capacity=capacity)
    added: list[str] = []
    for batch in batches:
        recent.add(md5_halves(batch))
        added.extend(batch)
    last = added[-capacity:] if added else []
    assert len(recent) == min(len(added), capacity)
    assert {i for i in added if i in recent} == set(last)
    probe = md5_halves([*added, "never added"])
    expected = [*(i in set(last) for i in added), False]
    assert recent.find(probe).tolist() == expected


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


U64S = st.integers(0, 2**64 - 1)


def kept(key: tuple[int, int]) -> tuple[int, int]:
    """The 80 bits of a key's two md5 words that ``KeyFingerprints`` keeps."""
    return key[0], key[1] >> 48


@settings(max_examples=60, deadline=None)
@given(
    keys=st.lists(st.tuples(U64S, U64S), max_size=120, unique_by=kept),
    probes=st.lists(st.tuples(U64S, U64S), max_size=40),
    sequences=st.lists(st.integers(1, 2**63 - 1), min_size=120, max_size=120),
    first=st.integers(0, 120),
    chunk=st.integers(1, 50),
    merge_at=st.sampled_from([1, 3, 1 << 16]),
)
def test_key_fingerprints_answer_like_a_dict(
    keys: list[tuple[int, int]],
    probes: list[tuple[int, int]],
    sequences: list[int],
    first: int,
    chunk: int,
    merge_at: int,
) -> None:
    """Whatever the keys, the batches they come in and when they merge, a lookup answers
    what a dict of the keys' 80 kept bits would, with each key's sequence."""
    merging = type("Merging", (KeyFingerprints,), {"MERGE_AT": merge_at})
    lo = np.array([k[0] for k in keys], np.uint64)
    hi = np.array([k[1] for k in keys], np.uint64)
    values = np.array(sequences[: len(keys)], np.int64)
    index = merging(lo[:first], hi[:first], values[:first])
    for start in range(first, len(keys), chunk):
        part = slice(start, start + chunk)
        index.add(lo[part], hi[part], values[part])
    assert len(index) == len(keys)
    expected = {kept(k): v for k, v in zip(keys, sequences, strict=False)}
    # Every key, neighbours differing in one kept bit, and arbitrary keys.
    near = [(k[0], k[1] ^ (1 << 48)) for k in keys[:10]] + [(k[0] ^ 1, k[1]) for k in keys[:10]]
    asked = keys + probes + near
    found, got = index.find(
        np.array([a[0] for a in asked], np.uint64), np.array([a[1] for a in asked], np.uint64)
    )
    assert found.tolist() == [kept(a) in expected for a in asked]
    assert got.tolist() == [expected.get(kept(a), 0) for a in asked]


def test_key_fingerprints_hold_12_bytes_a_key_and_widen_past_32_bits() -> None:
    rng = np.random.default_rng(3)
    lo = rng.integers(0, 2**64, 3000, dtype=np.uint64)
    hi = rng.integers(0, 2**64, 3000, dtype=np.uint64)
    lo[:50] = lo[0]  # one bucket crowded, and one low word shared by 50 keys
    values = np.arange(3000, dtype=np.int64) + 7
    index = KeyFingerprints(lo[:2000], hi[:2000], values[:2000])
    buckets = ((1 << 16) + 1) * 8
    assert index.nbytes == 2000 * 12 + buckets
    index.add(lo[2000:], hi[2000:], values[2000:])  # stays in the delta: 1,000 < MERGE_AT
    found, got = index.find(lo, hi)
    assert found.all() and (got == values).all()
    # Only the stored 80 bits are compared: the high word's low 48 bits are not.
    near = index.find(lo[:2000], hi[:2000] ^ np.uint64(1))[0]
    assert near.all()
    # ... but its top 16 bits and every bit of the low word are.
    assert not index.find(lo[:2000], hi[:2000] ^ np.uint64(1 << 63))[0].any()
    assert not index.find(lo[:2000] ^ np.uint64(1), hi[:2000])[0].any()
    big = np.array([2**40, 2**33], np.int64)
    extremes = np.array([0, 2**64 - 1], np.uint64)
    index.MERGE_AT = 1
    index.add(extremes, extremes, big)  # merged at once, widening every value
    found, got = index.find(np.concatenate([lo, extremes]), np.concatenate([hi, extremes]))
    assert found.all()
    assert got.tolist() == values.tolist() + big.tolist()
    assert index.nbytes == 3002 * 16 + buckets


def test_key_fingerprints_empty() -> None:
    empty = np.empty(0, np.uint64)
    index = KeyFingerprints(empty, empty, np.empty(0, np.int64))
    assert len(index) == 0
    found, got = index.find(np.array([0, 2**64 - 1], np.uint64), np.array([0, 1], np.uint64))
    assert not found.any() and got.tolist() == [0, 0]
    assert index.find(empty, empty)[0].shape == (0,)
