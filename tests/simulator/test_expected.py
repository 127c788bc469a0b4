"""Expected aggregates follow docs/EVENTS.md's rules on small hand-built scenarios."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from pulse_bi.simulator import events as ev
from pulse_bi.simulator.events import DUPLICATE_NO_MSG_ID, DUPLICATE_SAME_MSG_ID, SimMessage
from pulse_bi.simulator.expected import bucket_of, expected_aggregates, money

T0 = datetime(2026, 11, 25, 10, 15, tzinfo=UTC)
AS_OF = date(2026, 11, 25)
_ids = itertools.count(1)


def event(event_type: str, data: dict[str, Any], *, at: datetime | str = T0) -> SimMessage:
    """A valid event with a fresh id."""
    return ev.cloud_event(event_type, data, event_id=f"evt-{next(_ids)}", time=at)


def order(
    order_id: str, total: str = "100.00", *, channel: str = "web", at: Any = T0
) -> SimMessage:
    """An order of one line (one unit) whose total is ``total``."""
    lines = [("SKU-1", 1, Decimal(total))]
    return event("order.created", ev.order_created(order_id, "C-1", channel, lines), at=at)


def cancel(order_id: str) -> SimMessage:
    return event("order.cancelled", ev.order_cancelled(order_id, "customer request"))


def invoice(invoice_id: str, amount: str, due: date, customer: str = "C-1") -> SimMessage:
    data = ev.invoice_issued(
        invoice_id,
        customer,
        Decimal(amount),
        (due - timedelta(days=30)).isoformat(),
        due.isoformat(),
    )
    return event("invoice.issued", data)


def payment(payment_id: str, invoice_id: str, amount: str) -> SimMessage:
    return event("payment.received", ev.payment_received(payment_id, invoice_id, Decimal(amount)))


def move(sku: str, warehouse: str, delta: int, reason: str = "receipt", at: Any = T0) -> SimMessage:
    return event("stock.moved", ev.stock_moved(sku, warehouse, delta, reason), at=at)


def product(sku: str, reorder_point: int, name: str = "Widget") -> SimMessage:
    data = ev.product_updated(sku, name, "Tools", reorder_point, Decimal("2.50"))
    return event("product.updated", data)


def expected(*messages: SimMessage) -> dict[str, Any]:
    return expected_aggregates(messages, as_of=AS_OF)


def hour_row(result: dict[str, Any]) -> dict[str, Any]:
    (row,) = result["sales_by_hour"]
    return row


def test_order_counts_in_the_utc_hour_of_its_time() -> None:
    local = datetime(2026, 11, 25, 11, 59, 59, tzinfo=timezone(timedelta(hours=1)))  # 10:59:59 UTC
    row = hour_row(expected(order("O-1", "80.50", at=local)))
    assert row == {
        "hour": "2026-11-25T10:00:00+00:00",
        "orders": 1,
        "cancelled_orders": 0,
        "gross_revenue": "80.50",
        "cancelled_revenue": "0.00",
        "net_revenue": "80.50",
        "units": 1,
        "average_order_value": "80.50",
    }


def test_cancellation_counts_in_the_original_orders_hour() -> None:
    late = T0 + timedelta(hours=3)
    result = expected(order("O-1", "40.00"), order("O-2", "60.00", at=late), cancel("O-1"))
    first, second = result["sales_by_hour"]
    cancelled = (first["cancelled_orders"], first["cancelled_revenue"], first["net_revenue"])
    assert cancelled == (1, "40.00", "0.00")
    assert first["average_order_value"] == "0.00"  # no order left in that hour
    assert second["cancelled_orders"] == 0


def test_cancellation_before_its_order_is_held_and_applied_when_the_order_arrives() -> None:
    result = expected(cancel("O-1"), order("O-1", "40.00"), order("O-2", "60.00"))
    row = hour_row(result)
    assert (row["orders"], row["cancelled_orders"], row["net_revenue"]) == (2, 1, "60.00")
    assert result["counts"]["applied"] == 3


def test_cancelling_twice_counts_once() -> None:
    row = hour_row(expected(order("O-1", "40.00"), cancel("O-1"), cancel("O-1")))
    assert (row["cancelled_orders"], row["cancelled_revenue"]) == (1, "40.00")


def test_cancel_held_twice_before_its_order_counts_once() -> None:
    row = hour_row(expected(cancel("O-1"), cancel("O-1"), order("O-1", "40.00")))
    assert (row["cancelled_orders"], row["cancelled_revenue"]) == (1, "40.00")


def test_cancellation_of_an_order_that_never_arrives_changes_no_sales() -> None:
    result = expected(order("O-1", "40.00"), cancel("O-404"))
    assert hour_row(result)["cancelled_orders"] == 0


def test_average_order_value_rounds_half_up_to_the_cent() -> None:
    row = hour_row(expected(order("O-1", "100.00"), order("O-2", "0.02"), order("O-3", "0.02")))
    assert row["net_revenue"] == "100.04"
    assert row["average_order_value"] == "33.35"  # 33.3466… → 33.35
    row = hour_row(expected(order("O-1", "0.01"), order("O-2", "0.04")))
    assert row["average_order_value"] == "0.03"  # 0.025 → 0.03 (half-even would give 0.02)


def test_sales_by_channel_split_and_total_merge() -> None:
    result = expected(
        order("O-1", "10.00", channel="web"),
        order("O-2", "20.00", channel="store"),
        order("O-3", "30.00", channel="web"),
    )
    assert hour_row(result)["gross_revenue"] == "60.00"
    by_channel = result["sales_by_hour_by_channel"]
    assert sorted(by_channel) == ["store", "web"]
    assert by_channel["web"][0]["orders"] == 2
    assert by_channel["store"][0]["gross_revenue"] == "20.00"


def test_hours_are_ordered_and_only_hours_with_data_appear() -> None:
    result = expected(order("O-2", at=T0 + timedelta(hours=5)), order("O-1", at=T0))
    assert [r["hour"] for r in result["sales_by_hour"]] == [
        "2026-11-25T10:00:00+00:00",
        "2026-11-25T15:00:00+00:00",
    ]


def test_payment_before_its_invoice_counts_when_the_invoice_arrives() -> None:
    due = AS_OF - timedelta(days=10)
    result = expected(payment("P-1", "I-1", "30.00"), invoice("I-1", "100.00", due))
    (row,) = result["overdue_invoices"]
    assert (row["paid"], row["balance"], row["days_overdue"], row["bucket"]) == (
        "30.00",
        "70.00",
        10,
        "1-30",
    )
    assert result["ar_aging"]["days_1_30"] == "70.00"


def test_fully_paid_invoice_is_not_open() -> None:
    due = AS_OF - timedelta(days=40)
    result = expected(
        invoice("I-1", "100.00", due), payment("P-1", "I-1", "60.00"), payment("P-2", "I-1", "40")
    )
    assert result["overdue_invoices"] == []
    assert result["ar_aging"]["open_invoices"] == 0
    assert result["ar_aging"]["total"] == "0.00"


@pytest.mark.parametrize(
    ("days", "bucket"),
    [
        (-5, "current"),
        (0, "current"),
        (1, "1-30"),
        (30, "1-30"),
        (31, "31-60"),
        (60, "31-60"),
        (61, "61-90"),
        (90, "61-90"),
        (91, "over-90"),
    ],
)
def test_aging_bucket_boundaries(days: int, bucket: str) -> None:
    assert bucket_of(days) == bucket
    result = expected(invoice("I-1", "10.00", AS_OF - timedelta(days=days)))
    field = {
        "current": "current",
        "1-30": "days_1_30",
        "31-60": "days_31_60",
        "61-90": "days_61_90",
        "over-90": "over_90",
    }[bucket]
    assert result["ar_aging"][field] == "10.00"
    assert result["ar_aging"]["total"] == "10.00"
    overdue = result["overdue_invoices"]
    assert len(overdue) == (1 if days >= 1 else 0)


def test_ar_aging_by_customer_orders_by_total_then_customer_and_names_them() -> None:
    due = AS_OF - timedelta(days=45)
    result = expected(
        event("customer.updated", ev.customer_updated("C-2", "Beta Ltd")),
        invoice("I-1", "50.00", due, customer="C-2"),
        invoice("I-2", "50.00", due, customer="C-1"),
        invoice("I-3", "75.00", AS_OF, customer="C-3"),
    )
    aging = result["ar_aging"]
    assert aging["as_of"] == "2026-11-25"
    assert [c["customer_id"] for c in aging["by_customer"]] == ["C-3", "C-1", "C-2"]
    beta = aging["by_customer"][2]
    assert beta == {
        "customer_id": "C-2",
        "customer_name": "Beta Ltd",
        "current": "0.00",
        "days_1_30": "0.00",
        "days_31_60": "50.00",
        "days_61_90": "0.00",
        "over_90": "0.00",
        "total": "50.00",
        "open_invoices": 1,
    }
    assert (aging["current"], aging["days_31_60"], aging["total"], aging["open_invoices"]) == (
        "75.00",
        "100.00",
        "175.00",
        3,
    )


def test_overdue_invoices_order_by_days_desc_then_invoice_id() -> None:
    result = expected(
        invoice("I-B", "1.00", AS_OF - timedelta(days=5)),
        invoice("I-A", "1.00", AS_OF - timedelta(days=5)),
        invoice("I-C", "1.00", AS_OF - timedelta(days=100)),
    )
    assert [r["invoice_id"] for r in result["overdue_invoices"]] == ["I-C", "I-A", "I-B"]
    assert result["overdue_invoices"][0]["bucket"] == "over-90"


def test_stock_on_hand_sums_deltas_and_low_stock_includes_equal_to_reorder_point() -> None:
    result = expected(
        product("SKU-1", 10),
        product("SKU-2", 0),
        move("SKU-1", "WH-A", 25),
        move("SKU-1", "WH-A", -15, "shipment", at=T0 + timedelta(minutes=5)),
        move("SKU-1", "WH-B", 11),
        move("SKU-2", "WH-A", 0, "adjustment"),
        move("SKU-3", "WH-A", 1),
    )
    levels = {(r["sku"], r["warehouse"]): r for r in result["stock_levels"]}
    assert list(levels) == [
        ("SKU-1", "WH-A"),
        ("SKU-1", "WH-B"),
        ("SKU-2", "WH-A"),
        ("SKU-3", "WH-A"),
    ]
    assert levels["SKU-1", "WH-A"] == {
        "sku": "SKU-1",
        "warehouse": "WH-A",
        "on_hand": 10,
        "reorder_point": 10,
        "low_stock": True,
        "name": "Widget",
        "category": "Tools",
        "last_movement_at": "2026-11-25T10:20:00+00:00",
    }
    assert not levels["SKU-1", "WH-B"]["low_stock"]
    assert not levels["SKU-2", "WH-A"]["low_stock"]  # reorder point 0 is never low
    assert levels["SKU-3", "WH-A"]["reorder_point"] == 0  # no product.updated
    assert levels["SKU-3", "WH-A"]["name"] is None
    assert [(r["sku"], r["warehouse"]) for r in result["low_stock"]] == [("SKU-1", "WH-A")]


def test_latest_product_update_sets_the_reorder_point() -> None:
    result = expected(
        product("SKU-1", 5), move("SKU-1", "WH-A", 8), product("SKU-1", 8, "Widget 2")
    )
    (row,) = result["low_stock"]
    assert (row["reorder_point"], row["name"]) == (8, "Widget 2")


def test_low_stock_orders_by_gap_to_reorder_point_then_sku_and_warehouse() -> None:
    result = expected(
        product("B", 10),
        product("A", 10),
        move("B", "W1", 2),
        move("A", "W2", 5),
        move("A", "W1", 5),
    )
    assert [(r["sku"], r["warehouse"]) for r in result["low_stock"]] == [
        ("B", "W1"),
        ("A", "W1"),
        ("A", "W2"),
    ]


def test_top_products_rank_by_net_revenue_then_sku() -> None:
    lines_a = [("SKU-A", 3, Decimal("10.00")), ("SKU-B", 1, Decimal("30.00"))]
    lines_c = [("SKU-C", 100, Decimal("1.00"))]
    result = expected(
        product("SKU-A", 0, "Alpha"),
        event("order.created", ev.order_created("O-1", "C-1", "web", lines_a)),
        event("order.created", ev.order_created("O-2", "C-1", "web", lines_c)),
        cancel("O-2"),
    )
    top = result["top_products"]
    assert [(r["sku"], r["units"], r["revenue"]) for r in top] == [
        ("SKU-A", 3, "30.00"),
        ("SKU-B", 1, "30.00"),
        ("SKU-C", 0, "0.00"),
    ]
    assert (top[0]["name"], top[0]["category"]) == ("Alpha", "Tools")


def test_same_msg_id_duplicate_never_reaches_the_stream() -> None:
    original = order("O-1")
    again = SimMessage(
        original.subject, original.data, original.msg_id, "duplicate", DUPLICATE_SAME_MSG_ID
    )
    result = expected(original, again)
    assert result["counts"] == {
        "published": 2,
        "in_stream": 1,
        "applied": 1,
        "rejected": 0,
        "duplicates": 0,
    }
    assert hour_row(result)["orders"] == 1


def test_redelivered_event_id_without_header_is_a_counted_no_op() -> None:
    original = order("O-1")
    again = SimMessage(original.subject, original.data, None, "duplicate", DUPLICATE_NO_MSG_ID)
    result = expected(original, cancel("O-1"), again)
    assert result["counts"] == {
        "published": 3,
        "in_stream": 3,
        "applied": 2,
        "rejected": 0,
        "duplicates": 1,
    }
    row = hour_row(result)
    assert (row["orders"], row["cancelled_orders"]) == (1, 1)


def test_order_id_created_twice_under_another_event_id_is_rejected() -> None:
    result = expected(order("O-1", "10.00"), order("O-1", "99.00"))
    assert hour_row(result)["gross_revenue"] == "10.00"
    assert result["counts"]["rejected"] == 1


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[1, 2]",
        b'{"specversion": "0.3", "id": "x", "source": "/o", "type": "order.cancelled"}',
        b'{"specversion": "1.0", "id": "x", "source": "/o", "type": "order.exploded",'
        b' "time": "2026-11-25T10:00:00Z", "data": {}}',
        b'{"specversion": "1.0", "id": "x", "source": "/o", "type": "order.cancelled",'
        b' "time": "2026-11-25T10:00:00", "data": {"order_id": "O-1", "reason": "r"}}',
        b'{"specversion": "1.0", "id": "x", "source": "/o", "type": "order.cancelled",'
        b' "time": "2026-11-25T10:00:00Z", "data": {"order_id": "O-1"}}',
        b'{"specversion": "1.0", "id": "x", "source": "/o", "type": "order.cancelled",'
        b' "time": "2026-11-25T10:00:00Z", "data": {"order_id": 1, "reason": "r"}}',
    ],
    ids=[
        "not-json",
        "array",
        "old-specversion",
        "unknown-type",
        "naive-time",
        "missing",
        "mistyped",
    ],
)
def test_bad_input_is_rejected_and_changes_nothing(body: bytes) -> None:
    bad = SimMessage(ev.subject_for("order.cancelled"), body, "bad-1", "bad", "x")
    result = expected(order("O-1", "40.00"), bad)
    assert result["counts"]["rejected"] == 1
    assert hour_row(result)["cancelled_orders"] == 0


def test_money_with_three_decimals_is_rejected_in_strings_and_numbers() -> None:
    as_number = ev.payment_received("P-1", "I-1", Decimal("1.005"))
    as_string = ev.payment_received("P-2", "I-1", Decimal("1.005"), strings=True)
    due = AS_OF - timedelta(days=3)
    result = expected(
        invoice("I-1", "10.00", due),
        event("payment.received", as_number),
        event("payment.received", as_string),
    )
    assert result["counts"]["rejected"] == 2
    assert result["overdue_invoices"][0]["balance"] == "10.00"


def test_money_prints_two_decimals() -> None:
    assert [money(Decimal(v)) for v in ("5", "0.1", "-0.00", "1234.5")] == [
        "5.00",
        "0.10",
        "0.00",
        "1234.50",
    ]
