"""Receivables: open items, payments before invoices, aging buckets, overdue invoices."""

from __future__ import annotations

from datetime import date
from typing import Any

from materializer.queries import QueryContext
from materializer.store import Store
from tests.materializer.eventkit import Stream

AS_OF = "2026-11-25"


def aging(store: Store, **params: Any) -> dict[str, Any]:
    return store.query("ar_aging", {"as_of": AS_OF, **params}).wire  # type: ignore[no-any-return]


def overdue(store: Store, **params: Any) -> list[dict[str, Any]]:
    result = store.query("overdue_invoices", {"as_of": AS_OF, **params})
    return result.wire  # type: ignore[no-any-return]


def test_balance_is_amount_minus_payments_and_paid_invoices_are_not_open(
    store: Store, stream: Stream
) -> None:
    store.apply_batch(
        [
            stream.invoice("I-1", "100.00", order_id="O-9"),
            stream.invoice("I-2", "50.00"),
            stream.payment("P-1", "I-1", "30.00"),
        ]
    )
    store.apply_batch([stream.payment("P-2", "I-1", "0.50"), stream.payment("P-3", "I-2", "50")])
    rows = overdue(store)
    assert rows == [
        {
            "invoice_id": "I-1",
            "customer_id": "C-1",
            "customer_name": None,
            "order_id": "O-9",
            "amount": "100.00",
            "paid": "30.50",
            "balance": "69.50",
            "issued_on": "2026-10-01",
            "due_date": "2026-11-01",
            "days_overdue": 24,
            "bucket": "1-30",
        }
    ]
    assert aging(store)["open_invoices"] == 1


def test_payment_before_its_invoice_counts_when_the_invoice_arrives(
    store: Store, stream: Stream
) -> None:
    store.apply_batch([stream.payment("P-1", "I-1", "40.00")])
    assert aging(store)["total"] == "0.00"
    store.apply_batch([stream.payment("P-2", "I-1", "10.00")])
    store.apply_batch([stream.invoice("I-1", "100.00")])
    assert aging(store)["total"] == "50.00"
    store.apply_batch([stream.payment("P-3", "I-1", "5.00")])
    assert overdue(store)[0]["paid"] == "55.00"


def test_payment_and_invoice_in_one_batch_apply_in_any_order(store: Store, stream: Stream) -> None:
    store.apply_batch(
        [
            stream.payment("P-1", "I-1", "40.00"),
            stream.invoice("I-1", "100.00"),
            stream.invoice("I-2", "10.00"),
            stream.payment("P-2", "I-2", "10.00"),
        ]
    )
    assert [(r["invoice_id"], r["balance"]) for r in overdue(store)] == [("I-1", "60.00")]


def test_aging_buckets_follow_days_overdue_boundaries(store: Store, stream: Stream) -> None:
    dues = {
        "I-future": "2026-12-01",  # -6 days: current
        "I-today": "2026-11-25",  # 0: current
        "I-1": "2026-11-24",  # 1
        "I-30": "2026-10-26",  # 30
        "I-31": "2026-10-25",  # 31
        "I-60": "2026-09-26",  # 60
        "I-61": "2026-09-25",  # 61
        "I-90": "2026-08-27",  # 90
        "I-91": "2026-08-26",  # 91
    }
    store.apply_batch([stream.invoice(i, "1.00", due=due) for i, due in dues.items()])
    result = aging(store)
    assert {k: result[k] for k in ("current", "days_1_30", "days_31_60", "days_61_90")} == {
        "current": "2.00",
        "days_1_30": "2.00",
        "days_31_60": "2.00",
        "days_61_90": "2.00",
    }
    assert (result["over_90"], result["total"], result["open_invoices"]) == ("1.00", "9.00", 9)
    buckets = {r["invoice_id"]: (r["days_overdue"], r["bucket"]) for r in overdue(store)}
    assert buckets == {
        "I-1": (1, "1-30"),
        "I-30": (30, "1-30"),
        "I-31": (31, "31-60"),
        "I-60": (60, "31-60"),
        "I-61": (61, "61-90"),
        "I-90": (90, "61-90"),
        "I-91": (91, "over-90"),
    }
    everything = overdue(store, min_days_overdue=-10)
    assert [r["invoice_id"] for r in everything][-2:] == ["I-today", "I-future"]
    assert everything[-1]["bucket"] == "current"


def test_aging_by_customer_orders_by_total_then_customer_with_names(
    store: Store, stream: Stream
) -> None:
    store.apply_batch(
        [
            stream.customer("C-2", "Beta Ltd"),
            stream.invoice("I-1", "10.00", customer="C-1"),
            stream.invoice("I-2", "30.00", customer="C-2", due="2026-07-01"),
            stream.invoice("I-3", "30.00", customer="C-3"),
            stream.invoice("I-4", "20.00", customer="C-1", due="2026-12-24"),
        ]
    )
    result = aging(store)
    assert [(c["customer_id"], c["total"]) for c in result["by_customer"]] == [
        ("C-1", "30.00"),
        ("C-2", "30.00"),
        ("C-3", "30.00"),
    ]
    c1, c2 = result["by_customer"][0], result["by_customer"][1]
    assert (c1["current"], c1["days_1_30"], c1["open_invoices"]) == ("20.00", "10.00", 2)
    assert (c2["customer_name"], c2["over_90"]) == ("Beta Ltd", "30.00")
    assert aging(store, customer_limit=1)["by_customer"] == result["by_customer"][:1]
    assert result["as_of"] == AS_OF
    # Limit 0: the same buckets and count from the read that skips the customers.
    alone = aging(store, customer_limit=0)
    assert alone == {**result, "by_customer": []}
    assert (alone["total"], alone["over_90"], alone["open_invoices"]) == ("90.00", "30.00", 4)


def test_overdue_invoices_order_filter_and_minimum_days(store: Store, stream: Stream) -> None:
    store.apply_batch(
        [
            stream.invoice("I-b", "1.00", due="2026-11-20"),
            stream.invoice("I-a", "1.00", due="2026-11-20"),
            stream.invoice("I-c", "1.00", due="2026-10-01", customer="C-2"),
            stream.invoice("I-d", "1.00", due="2026-11-25"),
        ]
    )
    assert [r["invoice_id"] for r in overdue(store)] == ["I-c", "I-a", "I-b"]
    assert [r["invoice_id"] for r in overdue(store, min_days_overdue=10)] == ["I-c"]
    assert [r["invoice_id"] for r in overdue(store, customer_id="C-1")] == ["I-a", "I-b"]


def test_as_of_defaults_to_today_utc(store: Store, stream: Stream) -> None:
    store.apply_batch([stream.invoice("I-1", "5.00", due="2026-11-01")])
    context = QueryContext(today=date(2026, 11, 11))
    result = store.query("ar_aging", {}, context=context).wire
    assert (result["as_of"], result["days_1_30"]) == ("2026-11-11", "5.00")
    rows = store.query("overdue_invoices", {}, context=context).wire
    assert rows[0]["days_overdue"] == 10


def test_invoice_id_issued_again_under_another_event_id_is_rejected(
    store: Store, stream: Stream
) -> None:
    store.apply_batch([stream.invoice("I-1", "5.00", id="first")])
    result = store.apply_batch([stream.invoice("I-1", "7.00", id="second")])
    assert (result.applied, result.rejected) == (0, 1)
    assert aging(store)["total"] == "5.00"
    reason = store.query("rejected_events", {}).wire[0]["reason"]
    assert reason == "invoice_id 'I-1' already issued by event 'first'"


def test_batch_reports_receivables_changes(store: Store, stream: Stream) -> None:
    store.apply_batch([stream.invoice("I-1", "5.00", customer="C-5")])
    result = store.apply_batch([stream.payment("P-1", "I-1", "1.00")])
    assert result.aggregates == {"receivables", "pipeline"}
    assert result.changes.receivables is True
    assert result.changes.customers == ["C-5"]
    named = store.apply_batch([stream.customer("C-5", "Five")])
    assert named.changes.customers == ["C-5"]
    assert named.changes.receivables is False


def test_invoices_paid_in_full_leave_the_open_items(store: Store, stream: Stream) -> None:
    """Reads cost in proportion to open items: a settled invoice leaves ``invoices``."""
    store.apply_batch(
        [
            stream.invoice("I-1", "10.00"),
            stream.invoice("I-2", "20.00"),
            stream.payment("P-0", "I-3", "5.00"),  # before its invoice
        ]
    )
    store.apply_batch(
        [
            stream.payment("P-1", "I-1", "10.00"),
            stream.payment("P-2", "I-2", "5.00"),
            stream.invoice("I-3", "5.00"),  # paid in full before it arrived
            stream.invoice("I-4", "7.00"),
            stream.payment("P-4", "I-4", "7.00"),  # paid in full in its own batch
        ]
    )
    store.apply_batch([stream.payment("P-5", "I-1", "1.00")])  # more on a settled invoice

    rows = store.read(lambda cur: cur.execute("SELECT invoice_id FROM invoices").fetchall())
    assert rows == [("I-2",)]
    assert aging(store)["open_invoices"] == 1
    assert aging(store)["total"] == "15.00"
    assert [row["invoice_id"] for row in overdue(store)] == ["I-2"]


def test_aging_of_no_open_items_is_zero_with_no_customers(store: Store, stream: Stream) -> None:
    store.apply_batch([stream.invoice("I-1", "10.00"), stream.payment("P-1", "I-1", "10.00")])
    for limit in (0, 100):
        result = aging(store, customer_limit=limit)
        assert (result["total"], result["open_invoices"], result["by_customer"]) == ("0.00", 0, [])


REFUND_SCENARIO = [
    ("invoice", "I-1", "100.00"),
    ("payment", "P-1", "I-1", "100.00"),  # settles it
    ("payment", "P-2", "I-1", "-30.00"),  # a refund: 30.00 open again
    ("payment", "P-3", "I-1", "30.00"),  # settled again
    ("payment", "P-4", "I-1", "-0.01"),
    ("payment", "P-5", "I-2", "50.00"),  # before its invoice, paying it in full
    ("invoice", "I-2", "50.00"),
    ("payment", "P-6", "I-2", "-50.00"),
]


def _refund_events(stream: Stream) -> list[Any]:
    return [
        stream.invoice(step[1], step[2]) if step[0] == "invoice" else stream.payment(*step[1:])
        for step in REFUND_SCENARIO
    ]


def test_a_refund_reopens_a_settled_invoice_whatever_the_batches(tmp_path: Any) -> None:
    """Balance = amount - the sum of its payments, open while above zero (docs/EVENTS.md),
    also when a negative payment comes after the invoice was paid in full: the answer
    does not depend on how the stream was cut into batches."""
    answers = []
    for size in (1, 2, 3, len(REFUND_SCENARIO)):
        store = Store.open(tmp_path / f"batches-{size}.duckdb")
        events = _refund_events(Stream())
        for start in range(0, len(events), size):
            store.apply_batch(events[start : start + size])
        answers.append([(r["invoice_id"], r["paid"], r["balance"]) for r in overdue(store)])
        settled = store.read(
            lambda cur: cur.execute("SELECT count(*) FROM settled_invoices").fetchone()
        )
        assert settled == (0,)
        store.close()
    assert answers == [[("I-1", "99.99", "0.01"), ("I-2", "0.00", "50.00")]] * 4


def test_settled_invoices_leave_the_open_items_and_come_back(store: Store, stream: Stream) -> None:
    store.apply_batch([stream.invoice("I-1", "100.00"), stream.invoice("I-2", "10.00")])
    store.apply_batch([stream.payment("P-1", "I-1", "100.00")])
    assert [r["invoice_id"] for r in overdue(store)] == ["I-2"]
    assert aging(store)["open_invoices"] == 1
    store.apply_batch([stream.payment("P-2", "I-1", "-25.00")])
    assert aging(store)["open_invoices"] == 2
    assert aging(store)["total"] == "35.00"
    store.apply_batch([stream.payment("P-3", "I-1", "25.00"), stream.payment("P-4", "I-2", "10")])
    assert aging(store)["open_invoices"] == 0
    rows = store.read(
        lambda cur: cur.execute(
            "SELECT invoice_id, paid FROM settled_invoices ORDER BY invoice_id"
        ).fetchall()
    )
    assert [(i, str(p)) for i, p in rows] == [("I-1", "100.00"), ("I-2", "10.00")]
