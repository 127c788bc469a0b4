"""Sales aggregates: hour buckets, cancellations in the original hour, top products."""

from __future__ import annotations

from typing import Any

import pytest

from materializer.store import Store
from tests.materializer.eventkit import DAY, Stream


def hours(store: Store, **params: Any) -> list[dict[str, Any]]:
    result = store.query("sales_by_hour", {**DAY, **params})
    return result.wire  # type: ignore[no-any-return]


def summary(store: Store, **params: Any) -> dict[str, Any]:
    return store.query("sales_summary", {**DAY, **params}).wire  # type: ignore[no-any-return]


def test_orders_count_in_the_utc_hour_of_their_time(store: Store, stream: Stream) -> None:
    store.apply_batch(
        [
            stream.order("O-1", time="2026-11-25T10:59:59Z"),
            # 12:30 at +02:00 is 10:30 UTC: same bucket.
            stream.order("O-2", lines=[("SKU-2", 3, "1.50")], time="2026-11-25T12:30:00+02:00"),
            stream.order("O-3", time="2026-11-25T11:00:00Z"),
        ]
    )
    rows = hours(store)
    assert [row["hour"] for row in rows] == [
        "2026-11-25T10:00:00+00:00",
        "2026-11-25T11:00:00+00:00",
    ]
    assert rows[0] == {
        "hour": "2026-11-25T10:00:00+00:00",
        "orders": 2,
        "cancelled_orders": 0,
        "gross_revenue": "24.50",
        "cancelled_revenue": "0.00",
        "net_revenue": "24.50",
        "units": 5,
        "average_order_value": "12.25",
    }


def test_channel_filter_keeps_only_that_channel(store: Store, stream: Stream) -> None:
    store.apply_batch(
        [stream.order("O-1", channel="web"), stream.order("O-2", channel="shop", total="7.00")]
    )
    assert [row["gross_revenue"] for row in hours(store, channel="shop")] == ["7.00"]
    assert hours(store)[0]["orders"] == 2
    assert hours(store, channel="phone") == []


def test_cancellation_counts_in_the_original_order_hour_and_channel(
    store: Store, stream: Stream
) -> None:
    store.apply_batch([stream.order("O-1", channel="shop", time="2026-11-25T08:15:00Z")])
    store.apply_batch([stream.cancel("O-1", time="2026-11-25T14:00:00Z")])
    rows = hours(store)
    assert len(rows) == 1
    assert rows[0]["hour"] == "2026-11-25T08:00:00+00:00"
    assert rows[0]["cancelled_orders"] == 1
    assert rows[0]["cancelled_revenue"] == "20.00"
    assert rows[0]["net_revenue"] == "0.00"
    assert hours(store, channel="shop")[0]["cancelled_orders"] == 1
    assert hours(store, channel="web") == []


def test_cancellation_before_order_is_applied_when_order_arrives(
    store: Store, stream: Stream
) -> None:
    early = store.apply_batch([stream.cancel("O-1")])
    assert early.applied == 1
    assert hours(store) == []
    store.apply_batch([stream.order("O-1", total="20.00")])
    row = hours(store)[0]
    assert (row["orders"], row["cancelled_orders"], row["net_revenue"]) == (1, 1, "0.00")


@pytest.mark.parametrize("order_first", [True, False])
def test_order_and_cancellation_in_one_batch_apply_in_any_order(
    store: Store, stream: Stream, order_first: bool
) -> None:
    if order_first:
        messages = [stream.order("O-1"), stream.cancel("O-1")]
    else:
        messages = [stream.cancel("O-1"), stream.order("O-1")]
    store.apply_batch(messages)
    row = hours(store)[0]
    assert (row["orders"], row["cancelled_orders"], row["cancelled_revenue"]) == (1, 1, "20.00")
    assert store.query("pipeline", {}).wire["events_applied"] == 2


def test_cancelling_twice_counts_once(store: Store, stream: Stream) -> None:
    store.apply_batch([stream.order("O-1"), stream.cancel("O-1"), stream.cancel("O-1")])
    store.apply_batch([stream.cancel("O-1")])
    row = hours(store)[0]
    assert row["cancelled_orders"] == 1
    assert row["cancelled_revenue"] == "20.00"


def test_two_early_cancellations_count_once_when_the_order_arrives(
    store: Store, stream: Stream
) -> None:
    store.apply_batch([stream.cancel("O-1")])
    store.apply_batch([stream.cancel("O-1")])
    store.apply_batch([stream.order("O-1")])
    store.apply_batch([stream.cancel("O-1")])
    assert hours(store)[0]["cancelled_orders"] == 1


def test_average_order_value_is_net_revenue_over_uncancelled_orders(
    store: Store, stream: Stream
) -> None:
    store.apply_batch(
        [
            stream.order("O-1", total="10.00"),
            stream.order("O-2", total="20.00"),
            stream.order("O-3", total="0.01"),
            stream.cancel("O-2"),
        ]
    )
    result = summary(store)
    assert result["net_revenue"] == "10.01"
    assert result["average_order_value"] == "5.01"  # 10.01 / 2 = 5.005, half up
    store.apply_batch([stream.cancel("O-1"), stream.cancel("O-3")])
    assert summary(store)["average_order_value"] == "0.00"


def test_summary_of_empty_range_is_zero(store: Store) -> None:
    assert summary(store) == {
        "from": DAY["from"],
        "to": DAY["to"],
        "orders": 0,
        "cancelled_orders": 0,
        "gross_revenue": "0.00",
        "cancelled_revenue": "0.00",
        "net_revenue": "0.00",
        "units": 0,
        "average_order_value": "0.00",
    }


def test_range_is_inclusive_from_and_exclusive_to(store: Store, stream: Stream) -> None:
    store.apply_batch(
        [stream.order("O-1", time="2026-11-25T09:30:00Z"), stream.order("O-2", time=DAY["to"])]
    )
    window = {"from": "2026-11-25T09:00:00Z", "to": "2026-11-26T00:00:00Z"}
    assert [row["hour"] for row in store.query("sales_by_hour", window).wire] == [
        "2026-11-25T09:00:00+00:00"
    ]


def test_order_id_created_again_under_another_event_id_is_rejected_and_not_counted(
    store: Store, stream: Stream
) -> None:
    store.apply_batch([stream.order("O-1", id="first")])
    result = store.apply_batch([stream.order("O-1", id="second", total="99.00")])
    assert (result.applied, result.rejected) == (0, 1)
    in_batch = store.apply_batch(
        [stream.order("O-2", id="a"), stream.order("O-2", id="b", total="5.00")]
    )
    assert (in_batch.applied, in_batch.rejected) == (1, 1)
    reasons = [row["reason"] for row in store.query("rejected_events", {}).wire]
    assert reasons == [
        "order_id 'O-2' already created by event 'a'",
        "order_id 'O-1' already created by event 'first'",
    ]
    assert summary(store)["gross_revenue"] == "40.00"


def test_cancellation_of_a_re_created_order_id_cancels_the_original(
    store: Store, stream: Stream
) -> None:
    store.apply_batch([stream.order("O-1", total="20.00", id="first")])
    store.apply_batch([stream.order("O-1", total="99.00", id="again"), stream.cancel("O-1")])
    assert summary(store)["cancelled_revenue"] == "20.00"


def test_top_products_rank_by_net_revenue_then_sku(store: Store, stream: Stream) -> None:
    store.apply_batch(
        [
            stream.product("SKU-B", name="Bolt", category="hardware"),
            stream.order("O-1", lines=[("SKU-A", 1, "5.00"), ("SKU-B", 2, "5.00")]),
            stream.order("O-2", lines=[("SKU-C", 1, "10.00")]),
            stream.order("O-3", lines=[("SKU-A", 4, "5.00")]),
            stream.cancel("O-3"),
        ]
    )
    top = store.query("top_products", DAY).wire
    assert top == [
        {"sku": "SKU-B", "name": "Bolt", "category": "hardware", "units": 2, "revenue": "10.00"},
        {"sku": "SKU-C", "name": None, "category": None, "units": 1, "revenue": "10.00"},
        {"sku": "SKU-A", "name": None, "category": None, "units": 1, "revenue": "5.00"},
    ]
    # limit is the N of a top-N list, not a page size: no next page to follow.
    first = store.query("top_products", {**DAY, "limit": 1})
    assert [row["sku"] for row in first.wire] == ["SKU-B"]
    assert first.next_offset is None
    second = store.query("top_products", {**DAY, "limit": 1, "offset": 1})
    assert [row["sku"] for row in second.wire] == ["SKU-C"]


def test_batch_reports_touched_hours_channels_skus_and_customers(
    store: Store, stream: Stream
) -> None:
    store.apply_batch([stream.order("O-1", channel="shop", time="2026-11-25T08:15:00Z")])
    result = store.apply_batch(
        [
            stream.order("O-2", lines=[("SKU-9", 1, "1.00")], customer="C-7"),
            stream.cancel("O-1"),
        ]
    )
    assert result.aggregates == {"sales", "pipeline"}
    assert result.changes.sales_hours == [
        "2026-11-25T08:00:00+00:00",
        "2026-11-25T10:00:00+00:00",
    ]
    assert result.changes.channels == ["shop", "web"]
    assert result.changes.skus == ["SKU-1", "SKU-9"]
    assert result.changes.customers == ["C-7"]
    assert result.changes.receivables is False


def test_batch_without_cancellations_names_utc_hours_of_any_offset(
    store: Store, stream: Stream
) -> None:
    # Hours of new orders are computed in Python when no cancellation needs RETURNING.
    result = store.apply_batch(
        [
            stream.order("O-1", channel="phone", time="2026-11-25T12:59:59.999999+02:00"),
            stream.order("O-2", channel="web", time="2026-11-25T00:30:00-01:00"),
        ]
    )
    assert result.changes.sales_hours == [
        "2026-11-25T01:00:00+00:00",
        "2026-11-25T10:00:00+00:00",
    ]
    assert result.changes.channels == ["phone", "web"]
    assert [row["hour"] for row in hours(store)] == result.changes.sales_hours
