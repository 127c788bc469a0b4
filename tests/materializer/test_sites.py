"""Sites (docs/EVENTS.md, "Sites"): each event's ``Pulse-Site`` is stored and splits the
aggregates; a site-filtered query equals the same query over only that site's events."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from nats.js import JetStreamContext

from bench.paging import query_all
from materializer.app import Materializer
from materializer.store import RawMessage, Store
from pulse_bi.natsserver import LocalNatsServer
from pulse_bi.simulator import generate
from pulse_bi.simulator.events import SimMessage, stored_by_stream
from pulse_bi.simulator.expected import expected_aggregates
from tests.materializer.eventkit import Stream
from tests.materializer.lifecycle_kit import file_before

END = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
AS_OF = date(2026, 11, 25)
ALL_TIME = {"from": "2000-01-01T00:00:00+00:00", "to": "2100-01-01T00:00:00+00:00"}
#: Products and customers are global: every site's updates count for every site.
CATALOG = ("pulse.events.products.updated", "pulse.events.customers.updated")
#: Each named query the oracle computes, with its parameters and the oracle's key.
COMPARED = (
    ("sales_by_hour", ALL_TIME, "sales_by_hour"),
    ("sales_by_channel", ALL_TIME, "sales_by_channel"),
    ("stock_levels", {}, "stock_levels"),
    ("low_stock", {}, "low_stock"),
    ("ar_aging", {"as_of": AS_OF.isoformat()}, "ar_aging"),
    ("overdue_invoices", {"as_of": AS_OF.isoformat()}, "overdue_invoices"),
    ("top_products", {**ALL_TIME, "limit": 10}, "top_products"),
)


def _interleaved(*runs: list[SimMessage]) -> list[tuple[str, SimMessage]]:
    """Messages of several sites as one central stream receives them: alternating."""
    out: list[tuple[str, SimMessage]] = []
    longest = max(len(run) for run in runs)
    for index in range(longest):
        for site, run in zip(("wh1", "wh2", "wh3"), runs, strict=False):
            if index < len(run):
                out.append((site, run[index]))
    return out


def test_each_site_filtered_query_equals_the_same_query_over_that_sites_events(
    tmp_path: Path,
) -> None:
    scenarios = [
        generate(seed, 4000, out_of_order=0.1, duplicates=0.05, bad=0.02, end=END)
        for seed in (41, 42)
    ]
    mixed = _interleaved(*(s.messages for s in scenarios))
    site_of = {id(message): site for site, message in mixed}
    stored = [(site_of[id(m)], m) for m in stored_by_stream(m for _, m in mixed)]
    raw = [
        RawMessage(sequence, message.subject, message.data, END, site)
        for sequence, (site, message) in enumerate(stored, start=1)
    ]
    store = Store.open(tmp_path / "sites.duckdb")
    try:
        for start in range(0, len(raw), 1500):
            store.apply_batch(raw[start : start + 1500])
        everything = expected_aggregates([m for _, m in stored], as_of=AS_OF)
        for name, params, key in COMPARED:
            assert _answer(store, name, params) == everything[key], name
        assert _buckets_alone(store, {}) == {**everything["ar_aging"], "by_customer": []}
        for site in ("wh1", "wh2"):
            own = [m for s, m in stored if s == site or m.subject in CATALOG]
            expected = expected_aggregates(own, as_of=AS_OF)
            for name, params, key in COMPARED:
                answer = _answer(store, name, {**params, "site": site})
                assert answer == expected[key], (site, name)
            aging = _buckets_alone(store, {"site": site})
            assert aging == {**expected["ar_aging"], "by_customer": []}, site
            assert expected["sales_by_hour"] and expected["stock_levels"]
            assert expected["overdue_invoices"]
        # `sites`: each site's applied events, as the oracle counts them on its own.
        listed = {row["site"]: row for row in query_all(store, "sites", {}, wire=True)}
        assert sorted(listed) == ["wh1", "wh2"]
        for site, row in listed.items():
            alone = [m for s, m in stored if s == site]
            assert row["events"] == expected_aggregates(alone, as_of=AS_OF)["counts"]["applied"]
            times = [
                datetime.fromisoformat(json.loads(m.data)["time"])
                for m in alone
                if m.kind == "event"
            ]
            assert datetime.fromisoformat(row["last_event_time"]) == max(times)
        total = sum(row["events"] for row in listed.values())
        assert total == query_all(store, "pipeline", {}, wire=True)["events_applied"]
        # The central site ('') has no events here: its share is empty.
        assert query_all(store, "sales_by_hour", {**ALL_TIME, "site": ""}, wire=True) == []
        assert query_all(store, "stock_levels", {"site": ""}, wire=True) == []
        # Every site's share differs from the whole (the split is not a no-op).
        for site in ("wh1", "wh2"):
            share = query_all(store, "sales_by_hour", {**ALL_TIME, "site": site}, wire=True)
            assert share != everything["sales_by_hour"]
    finally:
        store.close()


def _sites(store: Store) -> list[tuple[str, int, str | None]]:
    rows = query_all(store, "sites", {}, wire=True)
    return [(row["site"], row["events"], row["last_event_time"]) for row in rows]


def test_the_central_site_is_counted_with_the_pipeline_state_and_listed_with_the_others(
    tmp_path: Path,
) -> None:
    """Events without a site leave no row in ``site_events`` (m0011): the central site's
    count is the applied events less the named sites', its latest time is kept with the
    pipeline state. ``sites`` lists it as before, whatever the batches mix."""
    central = generate(43, 1500, duplicates=0.05, bad=0.02, end=END).messages
    named = generate(44, 1500, duplicates=0.05, bad=0.02, end=END).messages
    # Central events alone first (batches of the central site only), then mixed.
    mixed = [("", m) for m in central[:500]] + [
        ("wh1" if site == "wh1" else "", m) for site, m in _interleaved(named, central[500:])
    ]
    site_of = {id(message): site for site, message in mixed}
    stored = [(site_of[id(m)], m) for m in stored_by_stream(m for _, m in mixed)]
    raw = [
        RawMessage(sequence, message.subject, message.data, END, site or None)
        for sequence, (site, message) in enumerate(stored, start=1)
    ]
    path = tmp_path / "central.duckdb"
    store = Store.open(path)
    try:
        for start in range(0, len(raw), 350):
            store.apply_batch(raw[start : start + 350])
        expected = []
        for site in ("", "wh1"):
            alone = [m for s, m in stored if s == site]
            times = [
                datetime.fromisoformat(json.loads(m.data)["time"])
                for m in alone
                if m.kind == "event"
            ]
            applied = expected_aggregates(alone, as_of=AS_OF)["counts"]["applied"]
            expected.append((site, applied, max(times).isoformat()))
        assert _sites(store) == expected
        applied = query_all(store, "pipeline", {}, wire=True)["events_applied"]
        assert sum(events for _, events, _ in expected) == applied
        no_row = store.read(
            lambda cur: cur.execute("SELECT site FROM site_events ORDER BY site").fetchall()
        )
        assert no_row == [("wh1",)]
        # A batch of bad messages alone changes neither count nor time.
        junk = [
            RawMessage(len(raw) + n, "pulse.events.orders.created", b"{", END, None) for n in (1, 2)
        ]
        store.apply_batch(junk)
        assert _sites(store) == expected
    finally:
        store.close()
    store = Store.open(path)
    try:
        assert _sites(store) == expected
    finally:
        store.close()


def _buckets_alone(store: Store, params: dict[str, Any]) -> Any:
    """The aging without customers (``customer_limit`` 0), its cheaper read."""
    aging = {"as_of": AS_OF.isoformat(), "customer_limit": 0, **params}
    return store.query("ar_aging", aging).wire


def _answer(store: Store, name: str, params: dict[str, Any]) -> Any:
    if name == "top_products":
        return store.query(name, params).wire
    return query_all(store, name, params, wire=True)


def _order(stream: Stream, order_id: str, amount: str, site: str | None) -> RawMessage:
    data = {
        "order_id": order_id,
        "customer_id": "C-1",
        "channel": "web",
        "total_amount": amount,
        "lines": [{"sku": "SKU-1", "quantity": 1, "unit_price": amount}],
    }
    return msgspec.structs.replace(stream.event("order.created", data), site=site)


def _cancel(stream: Stream, order_id: str, site: str | None) -> RawMessage:
    data = {"order_id": order_id, "reason": "customer"}
    return msgspec.structs.replace(stream.event("order.cancelled", data), site=site)


def _totals(store: Store, site: str | None) -> tuple[int, int, str]:
    params: dict[str, Any] = dict(ALL_TIME)
    if site is not None:
        params["site"] = site
    row = store.query("sales_summary", params).wire
    return row["orders"], row["cancelled_orders"], row["net_revenue"]


def test_an_order_created_at_one_site_and_cancelled_at_another_counts_at_its_own_site(
    tmp_path: Path,
) -> None:
    stream = Stream()
    store = Store.open(tmp_path / "cross.duckdb")
    try:
        store.apply_batch([_order(stream, "O-1", "10.00", "wh1")])
        # Cancelled at another site, in a later batch and in the same one as the order.
        store.apply_batch([_cancel(stream, "O-1", "wh2")])
        store.apply_batch([_order(stream, "O-2", "7.00", "wh1"), _cancel(stream, "O-2", None)])
        # A cancellation that arrives (at wh2) before its order (at wh1) waits for it.
        store.apply_batch([_cancel(stream, "O-3", "wh2")])
        store.apply_batch(
            [_order(stream, "O-3", "5.00", "wh1"), _order(stream, "O-4", "2.50", "wh2")]
        )
        assert _totals(store, "wh1") == (3, 3, "0.00")
        assert _totals(store, "wh2") == (1, 0, "2.50")
        assert _totals(store, "") == (0, 0, "0.00")
        assert _totals(store, None) == (4, 3, "2.50")
        top = store.query("top_products", {**ALL_TIME, "site": "wh1"}).wire
        assert [(r["sku"], r["units"], r["revenue"]) for r in top] == [("SKU-1", 0, "0.00")]
        # Each raw row keeps the site it was taken at.
        cancellations = store.read(
            lambda cur: cur.execute(
                "SELECT order_id, site, effect FROM order_cancellations ORDER BY sequence"
            ).fetchall()
        )
        assert cancellations == [
            ("O-1", "wh2", "applied"),
            ("O-2", "", "applied"),
            ("O-3", "wh2", "pending"),
        ]
        # Ids are global: the same order id at another site is the same order, refused.
        store.apply_batch([_order(stream, "O-1", "99.00", "wh2")])
        rejected = store.query("rejected_events", {}).wire
        assert rejected[0]["reason"].startswith("order_id 'O-1' already created by event")
        assert _totals(store, "wh2") == (1, 0, "2.50")
        listed = store.query("sites", {}).wire
        assert [(row["site"], row["events"]) for row in listed] == [
            ("", 1),
            ("wh1", 3),
            ("wh2", 3),  # the refused O-1 does not count
        ]
    finally:
        store.close()


def test_a_payment_at_another_site_settles_the_invoice_of_its_own_site(tmp_path: Path) -> None:
    stream = Stream()
    invoice = {
        "invoice_id": "I-1",
        "customer_id": "C-1",
        "amount": "100.00",
        "issued_on": "2026-09-01",
        "due_date": "2026-10-01",
    }
    payment = {"payment_id": "P-1", "invoice_id": "I-1", "amount": "40.00"}
    moves = [
        {"sku": "SKU-1", "warehouse": "W1", "quantity_delta": delta, "reason": "receipt"}
        for delta in (5, 7)
    ]
    store = Store.open(tmp_path / "ar.duckdb")
    try:
        store.apply_batch(
            [
                msgspec.structs.replace(stream.event("invoice.issued", invoice), site="wh1"),
                msgspec.structs.replace(stream.event("payment.received", payment), site="wh2"),
                msgspec.structs.replace(stream.event("stock.moved", moves[0]), site="wh1"),
                msgspec.structs.replace(stream.event("stock.moved", moves[1]), site="wh2"),
            ]
        )
        as_of = {"as_of": "2026-11-25"}
        by_site = {
            site: store.query("overdue_invoices", {**as_of, "site": site}).wire
            for site in ("wh1", "wh2")
        }
        assert [(r["invoice_id"], r["balance"]) for r in by_site["wh1"]] == [("I-1", "60.00")]
        assert by_site["wh2"] == []
        assert store.query("ar_aging", {**as_of, "site": "wh2"}).wire["total"] == "0.00"
        assert store.query("ar_aging", {**as_of, "site": "wh1"}).wire["total"] == "60.00"
        levels = {
            site: [r["on_hand"] for r in store.query("stock_levels", {"site": site}).wire]
            for site in ("wh1", "wh2", None)
        }
        assert levels == {"wh1": [5], "wh2": [7], None: [12]}
        movements = store.query("stock_movements", {"site": "wh2"}).wire
        assert [r["quantity_delta"] for r in movements] == [7]
    finally:
        store.close()


@pytest.mark.parametrize(
    ("site", "reason"),
    [
        ("", "Pulse-Site header: empty (leave the header out for the central site)"),
        ("w" * 10_240, "Pulse-Site header: 10240 characters, the limit is 64"),
        ("w" * 65, "Pulse-Site header: 65 characters, the limit is 64"),
        ("lager-münchen", "Pulse-Site header: 'lager-münchen' is not a site name"),
        ("wh\x001", "Pulse-Site header: 'wh\\x001' is not a site name"),
        ("wh 1", "Pulse-Site header: 'wh 1' is not a site name"),
        ("wh1\r\nX: y", "Pulse-Site header: 'wh1\\r\\nX: y' is not a site name"),
        ("wh.1", "Pulse-Site header: 'wh.1' is not a site name"),
        ("\ufffd", "Pulse-Site header: '\ufffd' is not a site name"),
    ],
)
def test_a_bad_site_header_is_a_stored_reject_with_its_reason(
    tmp_path: Path, site: str, reason: str
) -> None:
    stream = Stream()
    store = Store.open(tmp_path / "bad.duckdb")
    try:
        bad = _order(stream, "O-1", "10.00", site)
        good = _order(stream, "O-2", "3.00", "w" * 64)
        result = store.apply_batch([bad, good])
        assert (result.applied, result.rejected) == (1, 1)
        (rejected,) = store.query("rejected_events", {}).wire
        assert rejected["reason"].startswith(reason)
        assert len(rejected["reason"]) <= 500
        assert rejected["event_type"] == "order.created"
        assert rejected["event_id"] is not None
        assert _totals(store, None) == (1, 0, "3.00")
        assert _totals(store, "w" * 64) == (1, 0, "3.00")
        # The rejected event's id is not seen: sent again with a good site, it counts.
        again = msgspec.structs.replace(bad, sequence=stream.next_sequence, site="wh1")
        assert store.apply_batch([again]).applied == 1
        assert _totals(store, "wh1") == (1, 0, "10.00")
    finally:
        store.close()


@pytest.mark.parametrize(
    ("site", "problem"),
    [
        ("w" * 10_240, "is longer than 64 characters"),
        ("wh\x001", "must match"),
        ("lager-münchen", "must match"),
        (17, "must be a string"),
    ],
)
def test_a_bad_site_parameter_is_a_clear_error(tmp_path: Path, site: Any, problem: str) -> None:
    from materializer.store import BadQuery

    store = Store.open(tmp_path / "params.duckdb")
    try:
        for name, params, _ in COMPARED:
            with pytest.raises(BadQuery, match=f"parameter 'site' {problem}"):
                store.query(name, {**params, "site": site})
        # Queries that cannot be split by site refuse the parameter.
        with pytest.raises(BadQuery, match="unknown parameter"):
            store.query("pipeline", {"site": "wh1"})
    finally:
        store.close()


async def _raw_publish(url: str, subject: str, header_lines: list[str], payload: bytes) -> None:
    """Publish with header lines exactly as given (a NATS client keeps one per name)."""
    host, port = url.removeprefix("nats://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        await reader.readline()  # INFO
        headers = "NATS/1.0\r\n" + "".join(f"{line}\r\n" for line in header_lines) + "\r\n"
        block = headers.encode()
        writer.write(
            b'CONNECT {"verbose":false,"pedantic":false,"headers":true,"protocol":1}\r\n'
            + f"HPUB {subject} {len(block)} {len(block) + len(payload)}\r\n".encode()
            + block
            + payload
            + b"\r\nPING\r\n"
        )
        await writer.drain()
        assert (await reader.readline()).startswith(b"PONG")
    finally:
        writer.close()
        await writer.wait_closed()


async def test_sites_arrive_through_the_stream_headers(
    nats_server: LocalNatsServer, js: JetStreamContext, materializer: Materializer
) -> None:
    stream = Stream()

    def order(order_id: str, total: str) -> bytes:
        return _order(stream, order_id, total, None).data

    subject = "pulse.events.orders.created"
    await js.publish(subject, order("O-1", "1.00"), headers={"Pulse-Site": "wh1"})
    await js.publish(subject, order("O-2", "2.00"))
    await js.publish(subject, order("O-3", "4.00"), headers={"Pulse-Site": ""})
    await js.publish(subject, order("O-4", "8.00"), headers={"Pulse-Site": "w" * 10_240})
    # Repeated: the last line counts.
    await _raw_publish(
        nats_server.url, subject, ["Pulse-Site: wh9", "Pulse-Site: wh2"], order("O-5", "16.00")
    )
    await _raw_publish(
        nats_server.url, subject, ["Pulse-Site: wh2", "Pulse-Site: w h"], order("O-6", "32.00")
    )
    await materializer.wait_for_sequence(6)
    store = materializer.store
    assert store is not None
    assert {site: _totals(store, site) for site in ("wh1", "", "wh2", "wh9", None)} == {
        "wh1": (1, 0, "1.00"),
        "": (1, 0, "2.00"),
        "wh2": (1, 0, "16.00"),
        "wh9": (0, 0, "0.00"),
        None: (3, 0, "19.00"),
    }
    reasons = [r["reason"] for r in store.query("rejected_events", {}).wire]
    assert reasons == [
        "Pulse-Site header: 'w h' is not a site name (ASCII letters, digits, '-' and '_')",
        "Pulse-Site header: 10240 characters, the limit is 64",
        "Pulse-Site header: empty (leave the header out for the central site)",
    ]


def test_the_archive_keeps_each_messages_site_and_archived_orders_cancel_at_their_site(
    tmp_path: Path,
) -> None:
    from materializer import archive

    stream = Stream()
    first = [_order(stream, "O-1", "10.00", "wh1"), _order(stream, "O-2", "5.00", None)]
    bad = _order(stream, "O-3", "1.00", "w h")  # a bad header is archived as received
    root = tmp_path / "archive"
    store = Store.open(tmp_path / "archived.duckdb")
    try:
        store.apply_batch([*first, bad])
        archive.write_run(root, [*first, bad], store.conn)
        back = [m for chunk in archive.messages(root) for m in chunk]
        assert [(m.sequence, m.site) for m in back] == [(1, "wh1"), (2, None), (3, "w h")]
        # Retention: the raw rows leave the file, the archive answers for them.
        assert archive.retire(store.writer(), 3) == 4  # two orders, their lines
        store.archive = archive.ArchiveReader(root, 3)
        store.apply_batch([_cancel(stream, "O-1", "wh2"), _cancel(stream, "O-2", "wh2")])
        assert _totals(store, "wh1") == (1, 1, "0.00")
        assert _totals(store, "") == (1, 1, "0.00")
        assert _totals(store, "wh2") == (0, 0, "0.00")
    finally:
        store.close()


def test_an_archive_written_before_sites_reads_back_without_them(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from materializer import archive

    stream = Stream()
    message = _order(stream, "O-1", "10.00", "wh1")
    root = tmp_path / "archive"
    store = Store.open(tmp_path / "old.duckdb")
    try:
        store.apply_batch([message])
        archive.write_run(root, [message], store.conn)
    finally:
        store.close()
    (path,) = root.glob("type=*/day=*/*.parquet")
    old = pq.read_table(path).drop_columns(["site"])
    assert "site" not in old.schema.names and isinstance(old, pa.Table)
    pq.write_table(old, path)
    (back,) = [m for chunk in archive.messages(root) for m in chunk]
    assert (back.sequence, back.data, back.site) == (1, message.data, None)


def test_m0007_gives_rows_stored_before_sites_the_central_site(tmp_path: Path) -> None:
    from materializer import db

    path = tmp_path / "v6.duckdb"
    conn = file_before(path, 7)
    try:
        conn.execute(
            "INSERT INTO sales_by_hour VALUES ('2026-11-25 10:00:00+00', 'web', 2, 20, 2, 1, 10, 1)"
        )
        conn.execute("INSERT INTO stock_snapshot VALUES ('A', 'W', 5, '2026-11-25 10:00:00+00')")
        conn.execute(
            "UPDATE pipeline_state SET last_sequence = 9, events_applied = 9,"
            " last_event_time = '2026-11-25 10:04:05+00'"
        )
    finally:
        conn.close()
    assert db.migration_status(path).current == 6
    store = Store.open(path)
    try:
        for site in (None, ""):
            assert _totals(store, site) == (2, 1, "10.00")
            params = {} if site is None else {"site": site}
            assert [r["on_hand"] for r in store.query("stock_levels", params).wire] == [5]
        assert _totals(store, "wh1") == (0, 0, "0.00")
        assert [(r["site"], r["events"]) for r in store.query("sites", {}).wire] == [("", 9)]
        with_site = {
            name
            for (name,) in store.conn.execute(
                "SELECT table_name FROM duckdb_columns() WHERE column_name = 'site'"
            ).fetchall()
        }
        assert {"order_events", "order_lines", "stock_events", "invoices", "stock_snapshot"} <= (
            with_site
        )
    finally:
        store.close()


def test_m0011_moves_the_central_sites_count_and_time_to_the_pipeline_state(
    tmp_path: Path,
) -> None:
    from materializer import db

    path = tmp_path / "v10.duckdb"
    conn = file_before(path, 11)
    try:
        conn.execute(
            "INSERT INTO site_events VALUES ('', 9, '2026-11-25 10:04:05+00'),"
            " ('wh1', 3, '2026-11-25 11:00:00+00')"
        )
        conn.execute(
            "UPDATE pipeline_state SET last_sequence = 12, events_applied = 12,"
            " last_event_time = '2026-11-25 11:00:00+00'"
        )
    finally:
        conn.close()
    assert db.migration_status(path).current == 10
    store = Store.open(path)
    try:
        assert _sites(store) == [
            ("", 9, "2026-11-25T10:04:05+00:00"),
            ("wh1", 3, "2026-11-25T11:00:00+00:00"),
        ]
        rows = store.read(lambda cur: cur.execute("SELECT site FROM site_events").fetchall())
        assert rows == [("wh1",)]
        # The central site's next events add to what it had.
        stream = Stream()
        store.apply_batch([msgspec.structs.replace(stream.order("O-1"), sequence=13)])
        assert _sites(store)[0][:2] == ("", 10)
    finally:
        store.close()


def test_a_set_based_rebuild_from_the_archive_keeps_every_sites_share(tmp_path: Path) -> None:
    from materializer import archive, rebuild
    from tests.materializer.lifecycle_kit import assert_same, contents

    scenarios = [generate(seed, 1500, bad=0.02, end=END) for seed in (51, 52)]
    mixed = _interleaved(*(s.messages for s in scenarios))
    raw = [
        RawMessage(sequence, message.subject, message.data, END, site)
        for sequence, (site, message) in enumerate(mixed, start=1)
    ]
    root = tmp_path / "archive"
    live = Store.open(tmp_path / "live.duckdb")
    try:
        live.apply_batch(raw)
        archive.write_run(root, raw, live.conn)
    finally:
        live.close()
    rebuilt = Store.open(tmp_path / "rebuilt.duckdb")
    try:
        assert rebuild.load(rebuilt.conn, root) is not None
        for site in ("wh1", "wh2", ""):
            assert rebuilt.query("sales_summary", {**ALL_TIME, "site": site}).wire == (
                _answer_of(tmp_path / "live.duckdb", "sales_summary", {**ALL_TIME, "site": site})
            )
    finally:
        rebuilt.close()
    # Every aggregate table, site columns and the per-site counts included.
    left, right = contents(tmp_path / "rebuilt.duckdb"), contents(tmp_path / "live.duckdb")
    for table in ("sales_by_hour", "product_sales_by_hour", "stock_snapshot", "invoices"):
        assert left[table] == right[table], table
        assert {row for row in left[table] if "wh1" in row}, table
    assert left["site_events"] == right["site_events"]
    assert [row[0] for row in right["site_events"]] == ["wh1", "wh2"]
    assert_same(
        {k: v for k, v in left.items() if k not in archive.RAW_TABLES},
        {k: v for k, v in right.items() if k not in archive.RAW_TABLES},
    )


def _answer_of(path: Path, name: str, params: dict[str, Any]) -> Any:
    store = Store.open(path)
    try:
        return store.query(name, params).wire
    finally:
        store.close()
