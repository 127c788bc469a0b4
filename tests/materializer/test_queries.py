"""Named queries: every name answers JSON-able data; bad parameters fail clearly; paging."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgspec
import pytest

from materializer.queries import MAX_PAGE, BadQuery, QueryContext
from materializer.store import Store
from pulse_bi.contract import BY_NAME, QUERIES, QUERY_NAMES, QueryReply, wire_encoder
from tests.materializer.eventkit import DAY, Stream

#: Parameters every query needs to answer about the test day, from its spec: a window
#: when it has one, the day as the as-of date when it defaults to today.
PARAMS: dict[str, dict[str, Any]] = {
    spec.name: {
        **(DAY if spec.window else {}),
        **({"as_of": "2026-11-25"} if "as_of" in spec.clock else {}),
    }
    for spec in QUERIES
}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A store holding one event of every type."""
    opened = Store.open(tmp_path / "pulse.duckdb")
    stream = Stream()
    opened.apply_batch(
        [
            stream.product("SKU-1", reorder_point=5),
            stream.customer("C-1", "Acme"),
            stream.order("O-1"),
            stream.cancel("O-1"),
            stream.move("SKU-1", "W1", 3),
            stream.invoice("I-1", "10.00"),
            stream.payment("P-1", "I-1", "4.00"),
            stream.raw(b"junk"),
        ]
    )
    try:
        yield opened
    finally:
        opened.close()


@pytest.mark.parametrize("name", QUERY_NAMES)
def test_every_named_query_answers_json_data(store: Store, name: str) -> None:
    result = store.query(name, PARAMS.get(name, {}))
    assert result.wire
    spec = BY_NAME[name]
    encoded = wire_encoder.encode(QueryReply(version=1, data=result.data))
    # What the gateway decodes is what was sent, typed: a renamed field would fail here.
    assert msgspec.json.decode(encoded, type=QueryReply[spec.result]).data == result.data
    assert msgspec.json.decode(encoded)["data"] == result.wire
    assert result.next_offset is None


def test_unknown_query_name_is_a_bad_query(store: Store) -> None:
    with pytest.raises(BadQuery, match="unknown query 'sales'"):
        store.query("sales", {})


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("sales_by_hour", {"to": DAY["to"]}, "sales_by_hour: parameter 'from' is required"),
        ("sales_by_hour", {**DAY, "from": "yesterday"}, "'from' is not an ISO-8601 time"),
        ("sales_summary", {**DAY, "to": "2026-11-26T00:00:00"}, "'to' has no timezone offset"),
        ("sales_summary", {**DAY, "from": ["x"]}, "'from' must be an ISO-8601 time"),
        ("sales_by_hour", {**DAY, "channel": 3}, "'channel' must be a string"),
        ("sales_by_hour", {**DAY, "chanel": "web"}, "unknown parameter(s) chanel"),
        ("top_products", {**DAY, "limit": 0}, f"'limit' must be between 1 and {MAX_PAGE}"),
        ("top_products", {**DAY, "limit": "5"}, "'limit' must be an integer"),
        ("stock_levels", {"limit": MAX_PAGE + 1}, "'limit' must be between"),
        ("stock_levels", {"offset": -1}, "'offset' must be between"),
        ("stock_movements", {"limit": True}, "'limit' must be an integer"),
        ("ar_aging", {"as_of": "25/11/2026"}, "'as_of' is not a date YYYY-MM-DD"),
        ("ar_aging", {"customer_limit": -1}, "'customer_limit' must be between 0"),
        (
            "ar_aging",
            {"customer_limit": MAX_PAGE + 1},
            f"'customer_limit' must be between 0 and {MAX_PAGE}",
        ),
        ("overdue_invoices", {"min_days_overdue": "1"}, "'min_days_overdue' must be an integer"),
        ("pipeline", {"verbose": True}, "pipeline: unknown parameter(s) verbose"),
    ],
)
def test_bad_parameters_raise_bad_query_with_a_clear_message(
    store: Store, name: str, params: dict[str, Any], message: str
) -> None:
    with pytest.raises(BadQuery) as caught:
        store.query(name, params)
    assert message in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_parameters_must_be_an_object(store: Store) -> None:
    with pytest.raises(BadQuery, match="parameters must be a JSON object"):
        store.query("pipeline", ["x"])  # type: ignore[arg-type]


def test_null_parameters_mean_not_given(store: Store) -> None:
    result = store.query("sales_by_hour", {**DAY, "channel": None, "limit": None})
    assert result.wire[0]["orders"] == 1


def test_times_accept_epoch_milliseconds(store: Store) -> None:
    epoch = {"from": 1795564800000, "to": 1795651200000}  # 2026-11-25 .. 26 UTC
    assert store.query("sales_by_hour", epoch).wire == store.query("sales_by_hour", DAY).wire
    summary = store.query("sales_summary", epoch).wire
    assert (summary["from"], summary["to"]) == (DAY["from"], DAY["to"])


def test_lists_page_with_offset_and_next_offset(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "paged.duckdb")
    try:
        stream = Stream()
        store.apply_batch([stream.move(f"SKU-{n:02d}", "W1", 1) for n in range(25)])
        store.apply_batch(
            [stream.order(f"O-{h}", time=f"2026-11-25T{h:02d}:10:00Z") for h in range(24)]
        )
        first = store.query("stock_levels", {"limit": 10})
        assert [row["sku"] for row in first.wire] == [f"SKU-{n:02d}" for n in range(10)]
        assert first.next_offset == 10
        last = store.query("stock_levels", {"limit": 10, "offset": 20})
        assert [row["sku"] for row in last.wire] == [f"SKU-{n:02d}" for n in range(20, 25)]
        assert last.next_offset is None
        hours = store.query("sales_by_hour", {**DAY, "limit": 20})
        assert (len(hours.wire), hours.next_offset) == (20, 20)
        rest = store.query("sales_by_hour", {**DAY, "offset": 20})
        assert rest.wire[-1]["hour"] == "2026-11-25T23:00:00+00:00"
        assert rest.next_offset is None
        exact = store.query("sales_by_hour", {**DAY, "limit": 24})
        assert exact.next_offset is None
    finally:
        store.close()


def test_pipeline_reports_position_counters_and_lag(store: Store) -> None:
    data = store.query("pipeline", {}).wire
    assert data["last_sequence"] == data["version"] == 8
    assert (data["events_applied"], data["events_rejected"], data["batches"]) == (7, 1, 1)
    assert (data["stream_last_sequence"], data["lag"]) == (8, 0)
    assert data["last_event_time"] == "2026-11-25T10:04:05+00:00"
    store.stream_last_sequence = 20
    lagging = store.query("pipeline", {}).wire
    assert (lagging["stream_last_sequence"], lagging["lag"]) == (20, 12)


def _not_asked() -> Any:
    raise AssertionError("asked for health or lifecycle figures it does not show")


@pytest.mark.parametrize("name", [n for n in QUERY_NAMES if n != "pipeline"])
def test_only_the_pipeline_query_asks_for_health_and_lifecycle_figures(
    store: Store, name: str
) -> None:
    """They look at the disk; live subscriptions ask other queries a hundred times a second."""
    context = QueryContext(health=_not_asked, lifecycle=_not_asked)
    assert store.query(name, PARAMS.get(name, {}), context=context).wire


def test_the_pipeline_query_shows_the_health_and_lifecycle_it_is_given(store: Store) -> None:
    context = QueryContext(
        health=lambda: ("degraded", "low disk space"),
        lifecycle=lambda: {"file_bytes": 12345, "disk_free_bytes": 678},
    )
    row = store.query("pipeline", {}, context=context).wire
    assert (row["status"], row["reason"]) == ("degraded", "low disk space")
    assert (row["file_bytes"], row["disk_free_bytes"]) == (12345, 678)


@pytest.mark.parametrize("name", [*QUERY_NAMES, "stats()"])
def test_no_read_leaves_a_transaction_open(store: Store, name: str) -> None:
    """A read left open keeps old versions alive and blocks checkpoints (docs/OPERATIONS.md).

    The read runs on a worker thread, as the query service runs it; a batch then commits
    and CHECKPOINT must succeed.
    """
    with ThreadPoolExecutor(max_workers=1) as worker:
        if name == "stats()":
            worker.submit(store.stats).result()
        else:
            worker.submit(store.query, name, PARAMS.get(name, {})).result()
        stream = Stream(start=store.last_sequence() + 1)
        store.apply_batch([stream.move("SKU-1", "W1", 1), stream.order("O-2")])
        store.checkpoint()  # raises "Cannot CHECKPOINT: … other write transactions active"
        # The worker thread stays alive for the next read, as the query pool's threads do.
        worker.submit(store.stats).result()
        store.apply_batch([stream.move("SKU-1", "W1", 1)])
        store.checkpoint()


def test_reads_are_in_utc_whatever_the_process_time_zone(store: Store) -> None:
    """Hour buckets are UTC on every cursor (a cursor does not inherit a session SET)."""
    rows = store.read(lambda cur: cur.execute("SELECT current_setting('TimeZone')").fetchall())
    assert rows == [("UTC",)]
