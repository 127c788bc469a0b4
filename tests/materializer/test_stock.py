"""Stock snapshot: on hand per sku and warehouse, reorder points, low stock, movements."""

from __future__ import annotations

from materializer.store import Store
from tests.materializer.eventkit import Stream


def levels(store: Store, **params: str) -> list[tuple[str, str, int, int, bool]]:
    rows = store.query("stock_levels", params).wire
    return [
        (r["sku"], r["warehouse"], r["on_hand"], r["reorder_point"], r["low_stock"]) for r in rows
    ]


def test_on_hand_is_the_sum_of_movements_per_sku_and_warehouse(
    store: Store, stream: Stream
) -> None:
    store.apply_batch(
        [
            stream.move("SKU-1", "W1", 10),
            stream.move("SKU-1", "W1", -3, "shipment"),
            stream.move("SKU-1", "W2", 4),
        ]
    )
    store.apply_batch([stream.move("SKU-1", "W1", 1, "return"), stream.move("SKU-0", "W2", -2)])
    assert levels(store) == [
        ("SKU-0", "W2", -2, 0, False),
        ("SKU-1", "W1", 8, 0, False),
        ("SKU-1", "W2", 4, 0, False),
    ]
    assert levels(store, warehouse="W2", sku="SKU-1") == [("SKU-1", "W2", 4, 0, False)]


def test_last_movement_at_is_the_latest_movement_time(store: Store, stream: Stream) -> None:
    store.apply_batch(
        [
            stream.move("SKU-1", "W1", 1, time="2026-11-25T10:00:00Z"),
            stream.move("SKU-1", "W1", 1, time="2026-11-25T11:30:00+01:00"),
        ]
    )
    row = store.query("stock_levels", {}).wire[0]
    assert row["last_movement_at"] == "2026-11-25T10:30:00+00:00"


def test_reorder_point_comes_from_the_latest_product_update(store: Store, stream: Stream) -> None:
    store.apply_batch(
        [
            stream.product("SKU-1", reorder_point=50, name="Old"),
            stream.product("SKU-1", reorder_point=5, name="Bolt", category="hardware"),
            stream.move("SKU-1", "W1", 5),
            stream.move("SKU-2", "W1", 1),
        ]
    )
    rows = store.query("stock_levels", {}).wire
    assert rows[0] == {
        "sku": "SKU-1",
        "warehouse": "W1",
        "on_hand": 5,
        "reorder_point": 5,
        "low_stock": True,
        "name": "Bolt",
        "category": "hardware",
        "last_movement_at": "2026-11-25T10:04:05+00:00",
    }
    # No product update: reorder point 0, never low.
    assert levels(store, sku="SKU-2") == [("SKU-2", "W1", 1, 0, False)]
    store.apply_batch([stream.product("SKU-1", reorder_point=4)])
    assert levels(store, sku="SKU-1") == [("SKU-1", "W1", 5, 4, False)]


def test_low_stock_lists_rows_at_or_below_reorder_point_most_urgent_first(
    store: Store, stream: Stream
) -> None:
    store.apply_batch(
        [
            stream.product("A", reorder_point=10),
            stream.product("B", reorder_point=3),
            stream.product("C", reorder_point=0),
            stream.move("A", "W1", 9),
            stream.move("A", "W2", 2),
            stream.move("B", "W1", 3),
            stream.move("B", "W2", 4),
            stream.move("C", "W1", -5),
        ]
    )
    rows = store.query("low_stock", {}).wire
    assert [(r["sku"], r["warehouse"], r["on_hand"]) for r in rows] == [
        ("A", "W2", 2),
        ("A", "W1", 9),
        ("B", "W1", 3),
    ]
    assert all(r["low_stock"] for r in rows)
    only_w1 = store.query("low_stock", {"warehouse": "W1"}).wire
    assert [(r["sku"], r["warehouse"]) for r in only_w1] == [("A", "W1"), ("B", "W1")]


def test_stock_movements_are_newest_first_and_filtered(store: Store, stream: Stream) -> None:
    store.apply_batch(
        [
            stream.move("A", "W1", 5),
            stream.move("B", "W1", -1, "shipment"),
            stream.move("A", "W2", 2, "adjustment"),
        ]
    )
    rows = store.query("stock_movements", {}).wire
    assert [(r["sequence"], r["sku"], r["quantity_delta"], r["reason"]) for r in rows] == [
        (3, "A", 2, "adjustment"),
        (2, "B", -1, "shipment"),
        (1, "A", 5, "receipt"),
    ]
    assert rows[0]["time"] == "2026-11-25T10:04:05+00:00"
    filtered = store.query("stock_movements", {"sku": "A", "warehouse": "W1"}).wire
    assert [r["sequence"] for r in filtered] == [1]
    limited = store.query("stock_movements", {"limit": 2})
    assert [r["sequence"] for r in limited.wire] == [3, 2]
    assert limited.next_offset is None  # the latest N, not a page


def test_unknown_movement_reason_is_rejected(store: Store, stream: Stream) -> None:
    result = store.apply_batch([stream.move("A", "W1", 5, reason="theft")])
    assert (result.applied, result.rejected) == (0, 1)
    assert store.query("stock_levels", {}).wire == []


def test_batch_reports_stock_changes(store: Store, stream: Stream) -> None:
    result = store.apply_batch([stream.move("A", "W1", 5), stream.move("B", "W2", 1)])
    assert result.aggregates == {"stock", "pipeline"}
    assert result.changes.skus == ["A", "B"]
    assert result.changes.warehouses == ["W1", "W2"]
    assert result.changes.products is False
    product = store.apply_batch([stream.product("A", reorder_point=3)])
    assert product.changes.products is True
    assert product.changes.skus == ["A"]
    assert {"stock", "sales"} <= product.aggregates
