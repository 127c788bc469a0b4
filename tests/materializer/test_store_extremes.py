"""Extremes: every value the contract accepts is stored and read back exactly through the
store's named queries (docs/EVENTS.md, "Limits")."""

from __future__ import annotations

from datetime import date

from materializer.store import Store
from tests.materializer.eventkit import Stream

ALL_TIME = {"from": "1970-01-01T00:00:00Z", "to": "2200-01-01T00:00:00Z"}
MAX_MONEY = "9999999999999999.99"


def test_two_orders_of_the_largest_amount_in_one_hour_and_channel(store: Store) -> None:
    stream = Stream()
    lines = [("SKU-1", 1_000_000_000, MAX_MONEY)]
    result = store.apply_batch(
        [
            stream.order("O-1", total=MAX_MONEY, lines=lines),
            stream.order("O-2", total=MAX_MONEY, lines=lines),
        ]
    )
    assert (result.applied, result.rejected) == (2, 0)
    # And once more in a later batch: the upsert adds to the stored sum.
    store.apply_batch([stream.order("O-3", total=MAX_MONEY, lines=lines)])
    store.apply_batch([stream.cancel("O-3")])
    summary = store.query("sales_summary", ALL_TIME).wire
    assert summary["orders"] == 3
    assert summary["cancelled_orders"] == 1
    assert summary["gross_revenue"] == "29999999999999999.97"
    assert summary["cancelled_revenue"] == MAX_MONEY
    assert summary["net_revenue"] == "19999999999999999.98"
    assert summary["average_order_value"] == MAX_MONEY
    assert summary["units"] == 3_000_000_000
    [hour] = store.query("sales_by_hour", ALL_TIME).wire
    assert hour["gross_revenue"] == "29999999999999999.97"
    [top] = store.query("top_products", ALL_TIME).wire
    assert top["units"] == 2_000_000_000
    assert top["revenue"] == "19999999999999999980000000.00"


def test_an_order_of_ten_thousand_lines_of_the_largest_quantity_and_price(store: Store) -> None:
    stream = Stream()
    lines = [("SKU-1", 1_000_000_000, MAX_MONEY)] * 10_000
    result = store.apply_batch([stream.order("O-1", total=MAX_MONEY, lines=lines)] * 1)
    assert result.applied == 1
    [top] = store.query("top_products", ALL_TIME).wire
    assert top["units"] == 10_000 * 1_000_000_000
    assert top["revenue"] == "99999999999999999900000000000.00"


def test_three_moves_of_the_largest_delta_either_way(store: Store) -> None:
    stream = Stream()
    store.apply_batch([stream.move("SKU-1", "W", 1_000_000_000) for _ in range(3)])
    store.apply_batch([stream.move("SKU-2", "W", -1_000_000_000) for _ in range(2)])
    store.apply_batch([stream.move("SKU-2", "W", -1_000_000_000)])
    store.apply_batch([stream.product("SKU-2", reorder_point=1_000_000_000)])
    levels = {row["sku"]: row["on_hand"] for row in store.query("stock_levels", {}).wire}
    assert levels == {"SKU-1": 3_000_000_000, "SKU-2": -3_000_000_000}
    [low] = store.query("low_stock", {}).wire
    assert (low["sku"], low["on_hand"], low["reorder_point"]) == ("SKU-2", -3_000_000_000, 10**9)
    moves = store.query("stock_movements", {}).wire
    assert {row["quantity_delta"] for row in moves} == {10**9, -(10**9)}


def test_invoices_and_payments_of_the_largest_amount(store: Store) -> None:
    stream = Stream()
    store.apply_batch(
        [
            stream.invoice("I-1", MAX_MONEY, due="1970-01-01", issued="1970-01-01"),
            stream.invoice("I-2", MAX_MONEY, due="2199-12-31", issued="2199-12-31"),
            # Paid twice over: the sum of payments passes one value's DECIMAL(18,2).
            stream.invoice("I-3", MAX_MONEY),
            stream.payment("P-1", "I-3", MAX_MONEY),
            stream.payment("P-2", "I-3", MAX_MONEY),
            stream.payment("P-3", "I-4", MAX_MONEY),  # before its invoice
            stream.payment("P-4", "I-4", MAX_MONEY),
        ]
    )
    store.apply_batch([stream.invoice("I-4", MAX_MONEY), stream.payment("P-5", "I-3", "0.01")])
    aging = store.query("ar_aging", {"as_of": "2026-11-25"}).wire
    assert aging["total"] == "19999999999999999.98"
    assert aging["over_90"] == MAX_MONEY
    assert aging["current"] == MAX_MONEY
    assert aging["open_invoices"] == 2
    [overdue] = store.query("overdue_invoices", {"as_of": "2199-12-31"}).wire
    assert overdue["invoice_id"] == "I-1"
    assert overdue["days_overdue"] == (date(2199, 12, 31) - date(1970, 1, 1)).days
    assert overdue["balance"] == MAX_MONEY


def test_events_at_the_first_and_last_instant_of_the_time_window(store: Store) -> None:
    stream = Stream()
    store.apply_batch(
        [
            stream.order("O-1", time="1970-01-01T00:00:00Z"),
            stream.order("O-2", time="2199-12-31T23:59:59.999999Z", channel="store"),
            stream.move("SKU-1", "W", 1, time="2199-12-31T23:59:59.999999Z"),
        ]
    )
    hours = [row["hour"] for row in store.query("sales_by_hour", ALL_TIME).wire]
    assert hours == ["1970-01-01T00:00:00+00:00", "2199-12-31T23:00:00+00:00"]
    state = store.query("pipeline", {}).wire
    assert state["last_event_time"] == "2199-12-31T23:59:59.999999+00:00"
    [level] = store.query("stock_levels", {}).wire
    assert level["last_movement_at"] == "2199-12-31T23:59:59.999999+00:00"
