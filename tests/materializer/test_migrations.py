"""Schema migrations: status of a file, upgrade, and Store.open applying what is pending."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from materializer import db
from materializer.store import Store
from tests.materializer.eventkit import Stream


def test_missing_file_is_at_version_zero_with_everything_pending(tmp_path: Path) -> None:
    path = tmp_path / "new.duckdb"
    status = db.migration_status(path)
    assert status.current == 0
    assert status.latest >= 1
    assert status.pending == [f"{m.version:04d}_{m.name}" for m in db.available_migrations()]
    assert status.pending[0] == "0001_initial"
    assert not path.exists()


def test_upgrade_brings_a_file_to_the_latest_version(tmp_path: Path) -> None:
    path = tmp_path / "pulse.duckdb"
    status = db.upgrade(path)
    assert status.current == status.latest
    assert status.pending == []
    assert db.migration_status(path) == status
    # Upgrading again changes nothing.
    assert db.upgrade(path) == status


def test_migrations_are_numbered_consecutively_from_one() -> None:
    # Each file records the set it applied (db.apply_migrations), so a gap would still
    # work; consecutive numbers keep "version N" meaning "the first N migrations".
    versions = [m.version for m in db.available_migrations()]
    assert versions == list(range(1, len(versions) + 1))


def test_a_migration_missing_below_the_newest_applied_one_is_still_applied(
    tmp_path: Path,
) -> None:
    path = tmp_path / "pulse.duckdb"
    db.upgrade(path)
    newest = db.available_migrations()[-1]
    conn = duckdb.connect(str(path))
    try:  # as if the file was written by code that did not have migration 6 yet
        conn.execute("DELETE FROM schema_migrations WHERE version = 6")
        conn.execute("DROP TABLE archive_state")
    finally:
        conn.close()
    assert db.migration_status(path).pending == ["0006_archive_state"]
    status = db.upgrade(path)
    assert status.pending == [] and status.current == newest.version


def test_a_file_newer_than_the_code_is_refused_naming_both_versions(tmp_path: Path) -> None:
    path = tmp_path / "pulse.duckdb"
    latest = db.upgrade(path).latest
    conn = duckdb.connect(str(path))
    try:
        conn.execute(
            "INSERT INTO schema_migrations (version, name) VALUES (?, 'future')", [latest + 5]
        )
    finally:
        conn.close()
    with pytest.raises(db.SchemaTooNew) as refused:
        Store.open(path)
    message = str(refused.value)
    assert f"schema version {latest + 5}" in message and f"(latest {latest})" in message
    assert db.migration_status(path).too_new


def test_store_open_applies_pending_migrations_and_records_them(tmp_path: Path) -> None:
    path = tmp_path / "pulse.duckdb"
    store = Store.open(path)
    store.close()
    conn = duckdb.connect(str(path))
    try:
        rows = conn.execute("SELECT version, name FROM schema_migrations").fetchall()
        tables = {
            row[0]
            for row in conn.execute("SELECT table_name FROM information_schema.tables").fetchall()
        }
    finally:
        conn.close()
    assert rows[0] == (1, "initial")
    assert {
        "pipeline_state",
        "rejected_events",
        "order_events",
        "order_lines",
        "sales_by_hour",
        "product_sales_by_hour",
        "stock_events",
        "stock_snapshot",
        "product_events",
        "products",
        "customer_events",
        "customers",
        "invoice_events",
        "invoices",
        "payment_events",
    } <= tables
    assert db.migration_status(path).pending == []


def test_status_of_an_open_connection(tmp_path: Path) -> None:
    conn = db.connect(tmp_path / "pulse.duckdb")
    try:
        assert db.status(conn).current == 0
        upgraded = db.apply_migrations(conn)
        assert upgraded.current == upgraded.latest
        assert db.status(conn) == upgraded
    finally:
        conn.close()


@contextlib.contextmanager
def _file_at_version_1(path: Path) -> Iterator[Any]:
    """A connection to a new file with version 1's tables and an empty migrations table."""
    from materializer.migrations import m0001_initial

    conn = db.connect(path)
    try:
        conn.execute(m0001_initial.SQL)
        conn.execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR NOT NULL,"
            " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        yield conn
    finally:
        conn.close()


def test_upgrade_from_version_1_moves_seen_event_ids_out_of_seen_keys(tmp_path: Path) -> None:
    path = tmp_path / "v1.duckdb"
    with _file_at_version_1(path) as conn:
        conn.execute("INSERT INTO schema_migrations (version, name) VALUES (1, 'initial')")
        # What version 1 stored for one applied stock movement.
        conn.execute(
            "INSERT INTO stock_events VALUES (1, 'old-event', now(), 'A', 'W', 5, 'receipt')"
        )
        conn.execute("INSERT INTO seen_keys VALUES (md5_number('e:old-event'), 1)")
        conn.execute("INSERT INTO seen_keys VALUES (md5_number('o:O-1'), 1)")
        conn.execute("UPDATE pipeline_state SET last_sequence = 1")
    assert db.migration_status(path).current == 1
    store = Store.open(path)
    try:
        assert db.status(store.conn).pending == []
        left = store.conn.execute("SELECT count(*) FROM seen_keys").fetchone()
        assert left == (1,)  # the order key stays, the event key moved
        stream = Stream(start=2)
        result = store.apply_batch([stream.move("A", "W", 5, id="old-event")])
        assert (result.applied, result.duplicates) == (0, 1)
    finally:
        store.close()


def _file_at_version_2(path: Path) -> None:
    """A file as version 2 left it: narrow sums, rejected ids among the seen ones."""
    from materializer.migrations import m0002_seen_events

    with _file_at_version_1(path) as conn:
        conn.execute(
            "INSERT INTO stock_events VALUES (1, 'applied', now(), 'A', 'W', 5, 'receipt')"
        )
        conn.execute("INSERT INTO stock_snapshot VALUES ('A', 'W', 5, now())")
        conn.execute(
            "INSERT INTO rejected_events VALUES (2, 'pulse.events.stock.moved', 'refused',"
            " 'stock.moved', 'data: missing ''sku''', 'x'::BLOB, now())"
        )
        conn.execute(
            "INSERT INTO sales_by_hour VALUES ('2026-11-25 10:00:00+00', 'web', 1,"
            " 9999999999999999.99, 1, 0, 0, 0)"
        )
        conn.execute("UPDATE pipeline_state SET last_sequence = 2")
        conn.execute(m0002_seen_events.SQL)
        conn.execute("INSERT INTO schema_migrations (version, name) VALUES (1, 'initial')")
        conn.execute("INSERT INTO schema_migrations (version, name) VALUES (2, 'seen_events')")


def test_upgrade_from_version_2_widens_the_sums_and_forgets_rejected_ids(tmp_path: Path) -> None:
    path = tmp_path / "v2.duckdb"
    _file_at_version_2(path)
    assert db.migration_status(path).current == 2
    store = Store.open(path)
    try:
        types = dict(
            store.conn.execute(
                "SELECT table_name || '.' || column_name, data_type FROM information_schema.columns"
            ).fetchall()
        )
        assert types["sales_by_hour.gross_revenue"] == "DECIMAL(38,2)"
        assert types["sales_by_hour.units"] == "HUGEINT"
        assert types["product_sales_by_hour.revenue"] == "DECIMAL(38,2)"
        assert types["product_sales_by_hour.cancelled_units"] == "HUGEINT"
        assert types["stock_snapshot.on_hand"] == "HUGEINT"
        assert types["invoices.paid"] == "DECIMAL(38,2)"
        assert types["order_events.total_amount"] == "DECIMAL(18,2)"  # one value: narrow
        seen = store.conn.execute("SELECT count(*) FROM seen_events").fetchone()
        assert seen == (1,)  # the applied id only
        stream = Stream(start=3)
        result = store.apply_batch(
            [
                stream.move("A", "W", 1, id="applied"),  # applied before: a no-op
                stream.move("A", "W", 2, id="refused"),  # only rejected before: applied
                stream.order("O-1", total="9999999999999999.99", id="big"),
            ]
        )
        assert (result.applied, result.rejected, result.duplicates) == (2, 0, 1)
        assert store.query("stock_levels", {}).wire[0]["on_hand"] == 7
        hour = {"from": "2026-11-25T10:00:00Z", "to": "2026-11-25T11:00:00Z", "channel": "web"}
        summary = store.query("sales_summary", hour).wire
        assert summary["gross_revenue"] == "19999999999999999.98"
    finally:
        store.close()


def test_upgrade_drops_invoices_paid_in_full(tmp_path: Path) -> None:
    """``invoices`` holds open items only; m0005 removes what older files settled."""
    path = tmp_path / "pulse.duckdb"
    db.upgrade(path)
    conn = duckdb.connect(str(path))
    try:
        columns = [row[0] for row in conn.execute("DESCRIBE invoices").fetchall()]
        assert {"invoice_id", "amount", "paid"} <= set(columns)
        conn.execute("DELETE FROM schema_migrations WHERE version = 5")
        for invoice_id, amount, paid in (("I-open", 10, 4), ("I-paid", 10, 10), ("I-over", 5, 6)):
            conn.execute(
                "INSERT INTO invoices BY NAME SELECT ? AS invoice_id, 1 AS sequence,"
                " 'C-1' AS customer_id, NULL AS order_id, ? AS amount,"
                " DATE '2026-11-01' AS issued_on, DATE '2026-12-01' AS due_date, ? AS paid",
                [invoice_id, amount, paid],
            )
    finally:
        conn.close()
    db.upgrade(path)
    conn = duckdb.connect(str(path))
    try:
        assert conn.execute("SELECT invoice_id FROM invoices").fetchall() == [("I-open",)]
    finally:
        conn.close()


def test_upgrade_to_version_9_recovers_settled_invoices_so_a_refund_reopens_one(
    tmp_path: Path,
) -> None:
    path, stream = tmp_path / "pulse.duckdb", Stream()
    store = Store.open(path)
    store.apply_batch([stream.invoice("I-1", "100.00"), stream.invoice("I-2", "80.00")])
    store.apply_batch([stream.payment("P-1", "I-1", "60.00"), stream.payment("P-2", "I-1", "40")])
    store.close()
    conn = db.connect(path)  # what version 8 left: the settled invoice only in raw rows
    conn.execute("DROP TABLE settled_invoices")
    conn.execute("DELETE FROM schema_migrations WHERE version = 9")
    conn.close()
    store = Store.open(path)
    try:
        settled = store.read(
            lambda cur: cur.execute("SELECT invoice_id, paid FROM settled_invoices").fetchall()
        )
        assert [(i, str(p)) for i, p in settled] == [("I-1", "100.00")]
        store.apply_batch([stream.payment("P-3", "I-1", "-10.00")])
        aging = store.query("ar_aging", {"as_of": "2026-11-25"}).wire
        assert (aging["open_invoices"], aging["total"]) == (2, "90.00")
    finally:
        store.close()


#: What versions 8 to 11 read the folded aggregates through: a delta table each (m0008).
_OLD_DELTAS = {
    "sales_by_hour": "hour, channel, site, orders, gross_revenue, units, cancelled_orders,"
    " cancelled_revenue, cancelled_units",
    "product_sales_by_hour": "hour, sku, site, units, revenue, cancelled_units, cancelled_revenue",
    "stock_snapshot": "sku, warehouse, site, on_hand, last_movement_at",
}


def _answers(store: Store) -> dict[str, Any]:
    everything = {"from": "2026-01-01T00:00:00Z", "to": "2027-01-01T00:00:00Z"}
    return {
        name: store.query(name, params).wire
        for name, params in (
            ("sales_by_hour", everything),
            ("sales_summary", everything),
            ("top_products", everything),
            ("stock_levels", {}),
        )
    }


#: A delta row of each aggregate: what the two batches of the upgrade tests leave.
_ONE_EACH = {"sales_by_hour": 1, "product_sales_by_hour": 1, "stock_snapshot": 1}


def _waiting(store: Store) -> dict[str, int]:
    """The rows waiting in ``aggregate_deltas``, by aggregate."""
    rows = store.read(
        lambda cur: cur.execute(
            "SELECT aggregate, count(*) FROM aggregate_deltas GROUP BY ALL"
        ).fetchall()
    )
    return dict(rows)


#: The pipeline state's columns, as a table of version 15 holds them.
_PIPELINE_COLUMNS = (
    "last_sequence, events_applied, events_rejected, events_duplicate, batches,"
    " last_event_time, last_batch_at, central_last_event_time"
)


def _pipeline_state_as_before_16(conn: duckdb.DuckDBPyConnection) -> None:
    """Make ``pipeline_state`` the table it was before m0016: its rows waiting in
    ``aggregate_deltas`` folded into it."""
    now = conn.execute(f"SELECT {_PIPELINE_COLUMNS} FROM pipeline_state").fetchall()
    assert len(now) == 1
    sets = ", ".join(f"{c.strip()} = ?" for c in _PIPELINE_COLUMNS.split(","))
    conn.execute(f"UPDATE pipeline_state_base SET {sets} WHERE id = 1", list(now[0]))
    conn.execute("DELETE FROM aggregate_deltas WHERE aggregate = 'pipeline_state'")
    conn.execute("DROP VIEW pipeline_state")
    conn.execute("ALTER TABLE pipeline_state_base RENAME TO pipeline_state")


def test_upgrade_to_version_12_moves_rows_waiting_in_three_deltas_into_one(
    tmp_path: Path,
) -> None:
    path, stream = tmp_path / "pulse.duckdb", Stream()
    store = Store.open(path)
    store.apply_batch(
        [
            stream.order("O-1", lines=[("SKU-1", 2, "5.00")], total="10.00"),
            stream.order("O-2", lines=[("SKU-2", 1, "7.50")], total="7.50", channel="pos"),
            stream.move("SKU-1", "W1", 5),
        ]
    )
    store.compact()  # some rows folded into the bases, some waiting in the deltas
    store.apply_batch([stream.cancel("O-1"), stream.move("SKU-1", "W1", -2)])
    before = _answers(store)
    assert _waiting(store) == {**_ONE_EACH, "pipeline_state": 1}
    store.close()
    conn = db.connect(path)  # what version 11 left: the same rows in a delta table each
    _pipeline_state_as_before_16(conn)
    for name, columns in _OLD_DELTAS.items():
        conn.execute(
            f"CREATE TABLE {name}_delta AS SELECT {columns} FROM aggregate_deltas"
            f" WHERE aggregate = '{name}'"
        )
        conn.execute(f"DROP VIEW {name}")
        conn.execute(
            f"CREATE VIEW {name} AS SELECT * FROM {name}_base UNION ALL SELECT * FROM {name}_delta"
        )
    conn.execute("DROP TABLE aggregate_deltas")
    conn.execute("DELETE FROM schema_migrations WHERE version IN (12, 16)")
    conn.close()
    store = Store.open(path)
    try:
        assert _answers(store) == before
        tables = store.read(
            lambda cur: cur.execute(
                "SELECT table_name FROM duckdb_tables() WHERE table_name LIKE '%_delta%'"
            ).fetchall()
        )
        assert tables == [("aggregate_deltas",)]
        store.compact()
        assert _answers(store) == before
        store.apply_batch([stream.order("O-3", lines=[("SKU-1", 1, "1.00")], total="1.00")])
        assert _answers(store)["sales_summary"]["orders"] == 3
    finally:
        store.close()


def test_upgrade_to_version_16_keeps_the_pipeline_state_and_the_rows_waiting(
    tmp_path: Path,
) -> None:
    """Version 15 updated ``pipeline_state``, a table; m0016 makes it a base and a view of
    it and of its delta rows, and moves the other aggregates' waiting rows over."""
    from materializer.aggregates import pipeline
    from materializer.migrations import m0012_one_delta_table

    path, stream = tmp_path / "pulse.duckdb", Stream()
    store = Store.open(path)
    first = stream.order("O-1", lines=[("SKU-1", 2, "5.00")], total="10.00")
    store.apply_batch([first, stream.move("SKU-1", "W1", 5)])
    store.compact()
    store.apply_batch(
        [
            stream.order("O-2", lines=[("SKU-2", 1, "7.50")], total="7.50"),
            stream.raw(first.data),  # a duplicate
            stream.raw(b"{"),  # rejected
            stream.move("SKU-1", "W1", -2),
        ]
    )
    before, state = _answers(store), store.read(pipeline.state)
    store.close()
    conn = db.connect(path)  # as version 15 left it
    _pipeline_state_as_before_16(conn)
    conn.execute("ALTER TABLE aggregate_deltas RENAME TO aggregate_deltas_16")
    create_15 = m0012_one_delta_table.SQL.split(";")[0]
    conn.execute(create_15)
    conn.execute(
        "INSERT INTO aggregate_deltas BY NAME SELECT * EXCLUDE (central_last_event_time)"
        " FROM aggregate_deltas_16"
    )
    conn.execute("DROP TABLE aggregate_deltas_16")
    conn.execute("DELETE FROM schema_migrations WHERE version = 16")
    conn.close()

    store = Store.open(path)
    try:
        assert store.read(pipeline.state) == state
        assert state["events_applied"] == 4 and state["last_sequence"] == 6
        assert state["events_duplicate"] == 1 and state["events_rejected"] == 1
        assert _answers(store) == before
        assert _waiting(store) == _ONE_EACH
        store.apply_batch([stream.order("O-3", lines=[("SKU-1", 1, "1.00")], total="1.00")])
        after = store.read(pipeline.state)
        assert after["last_sequence"] == 7 and after["events_applied"] == 5
        assert after["batches"] == state["batches"] + 1
        store.compact()
        assert store.read(pipeline.state) == after
        assert _answers(store)["sales_summary"]["orders"] == 3
    finally:
        store.close()
